#!/usr/bin/env python3
"""Summarize a bench/compare_llamacpp.sh results dir as one markdown table (stdout) + summary.json.

    python bench/compare_report.py RESULTS_DIR

Per round (RESULTS_DIR/round-K/, or RESULTS_DIR itself for results of a single-round layout) it reads
llama/bench-FMT{,-pp,-tg}.json (llama-bench -o json; one run, or prefill and decode runs),
llama/membw-FMT.json (bench/membw.c reading that GGUF), llama/vision-S.log (llama-mtmd-cli),
qwen3vl/text-FMT{,-pp,-tg}.json and qwen3vl/vision.json (qwen3vl bench
--json, whose "bandwidth" rows hold the decode fraction of the limit measured around each repetition),
*.time (GNU time -v: peak RSS), membw.json (fresh-buffer probe); and hf.json (bench/hf_bench.py),
meta.json at the top. Missing pieces show as "-". Speeds are medians of the timed repetitions
(llama-bench: median of samples_ts). With several rounds, a last table gives each ratio's median
over the rounds and its min..max, and the decode ratio at equal bandwidth: each engine's tok/s divided
by the read bandwidth measured around its own run (the raw ratio moves with the machine's bandwidth
between the two runs; this one does not).
"""
from __future__ import annotations

import json
import math
import re
import statistics
import struct
import sys
from pathlib import Path

TARGETS = {"pp": 1.3, "tg": 1.15, "vision": 2.0, "bw": 0.85}
BYTES_PER_WEIGHT = {"bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_k_m": None}


def load_json(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def peak_rss_mb(p: Path):
    try:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.read_text())
        return int(m.group(1)) / 1024 if m else None
    except OSError:
        return None


def llama_text(out: Path, fmt: str, pp: int, tg: int) -> dict:
    # One llama-bench run with both tests (bench-FMT.json), or separate prefill / decode runs
    # (bench-FMT-pp.json, bench-FMT-tg.json; peak RSS: the larger).
    names = [f"bench-{fmt}"] if (out / "llama" / f"bench-{fmt}.json").is_file() else [f"bench-{fmt}-pp", f"bench-{fmt}-tg"]
    j = [e for n in names for e in (load_json(out / "llama" / f"{n}.json") or [])]
    rss = [x for x in (peak_rss_mb(out / "llama" / f"{n}.time") for n in names) if x]
    r = {"rss_mb": max(rss) if rss else None} if j else {}
    for e in j:
        med = statistics.median(e["samples_ts"]) if e.get("samples_ts") else e.get("avg_ts")
        if e.get("n_prompt") == pp and e.get("n_gen") == 0:
            r["pp"] = med
        elif e.get("n_gen") == tg and e.get("n_prompt") == 0:
            r["tg"] = med
        r["model_size"] = e.get("model_size")
        r["flash_attn"] = e.get("flash_attn")
        r["cpu_info"] = e.get("cpu_info")
        r["build"] = e.get("build_commit")
    return r


def llama_vision(out: Path, size: int) -> dict:
    p = out / "llama" / f"vision-{size}.log"
    r = {"rss_mb": peak_rss_mb(out / "llama" / f"vision-{size}.time")}
    try:
        text = p.read_text(errors="replace")
    except OSError:
        return r
    batches = [int(x) for x in re.findall(r"encoding mtmd batch, n_chunks = (\d+)", text)]
    times = [float(x) / 1000 for x in re.findall(r"mtmd batch encoding done in (\d+) ms", text)]
    per_image = []
    for k, t in zip(batches, times):
        per_image += [t / k] * k
    if len(batches) > 1:
        per_image = per_image[batches[0]:]  # the first batch is the warm-up
    if per_image:
        r["median_s"] = statistics.median(per_image)
        r["n"] = len(per_image)
    m = re.search(r"image_max_pixels:\s+(\d+)", text)
    if m:
        r["image_max_pixels"] = int(m.group(1))
    return r


def ours(out: Path, name: str) -> dict:
    # NAME.json, or NAME-pp.json + NAME-tg.json (separate prefill / decode runs; peak RSS: the larger).
    names = [name] if (out / "qwen3vl" / f"{name}.json").is_file() else [f"{name}-pp", f"{name}-tg"]
    js = [j for j in (load_json(out / "qwen3vl" / f"{n}.json") for n in names) if j]
    if not js:
        return {}  # failed or not run: no RSS either
    rss = [x for x in (peak_rss_mb(out / "qwen3vl" / f"{n}.time") for n in names) if x]
    r = {"rss_mb": max(rss) if rss else None}
    r["peak_rss_mb_self"] = max(j.get("peak_rss_mb") or 0 for j in js)
    r["weights"] = js[0].get("weights")
    for j in js:
        if j.get("mem_bw_gbs"):
            r["mem_bw_gbs"] = j["mem_bw_gbs"]
        for b in j.get("bandwidth", []):
            if b.get("test", "").startswith("tg") and "@" not in b["test"] and b.get("fraction_of_limit"):
                per = b.get("per_rep_fraction") or []
                r["bw_fraction"] = statistics.median(per) if per else b["fraction_of_limit"]
                r["bw_fraction_min"] = b.get("fraction_min")
                r["bw_fraction_max"] = b.get("fraction_max")
        for e in j.get("results", []):
            t = e["test"]
            if t.startswith("pp"):
                r["pp"] = e.get("tok_s")
            elif t.startswith("tg") and "@" not in t:
                r["tg"] = e.get("tok_s")
            elif t.startswith("vision "):
                size = int(t.split()[1].split("x")[0])
                r[f"vision{size}"] = e["median_s"]
    return r


def text_params(model_dir: str) -> int | None:
    """Parameters the decoder reads per token: language-model weights (+ lm_head if untied).
    With tied embeddings the embedding matrix is read once per token as the output projection."""
    try:
        total = 0
        for f in sorted(Path(model_dir).glob("*.safetensors")):
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                h = json.loads(fh.read(n))
            for k, v in h.items():
                if k.startswith("model.language_model.") or k == "lm_head.weight":
                    total += math.prod(v["shape"])
        return total or None
    except OSError:
        return None


def fmt(x, spec="%.2f"):
    return "-" if x is None else spec % x


def ratio(a, b, target=None, lower_is_better=False):
    """a = qwen3vl, b = llama.cpp; returns 'x.xx x (>= t: ok)' text."""
    if a is None or b is None or b == 0 or a == 0:
        return "-"
    r = (b / a) if lower_is_better else (a / b)
    s = f"{r:.2f}x"
    if target is not None:
        s += f" {'ok' if r >= target else 'MISS'} (>= {target})"
    return s


def collect(rd: Path, meta: dict, nparams) -> dict:
    """Every figure of one round dir: {"formats": {fmt: {...}}, "vision": {...}, "membw": {...}}."""
    pp, tg = meta.get("pp", 512), meta.get("tg", 128)
    sizes = [int(s) for s in str(meta.get("vision", "")).split(",") if s]
    formats = [f for f in str(meta.get("formats", "bf16")).split(",") if f]
    fresh = load_json(rd / "membw.json") or {}
    d = {"membw": fresh, "formats": {}, "vision": {"llama": {s: llama_vision(rd, s) for s in sizes},
                                                    "qwen3vl": ours(rd, "vision")}}
    for f in formats:
        L, O = llama_text(rd, f, pp, tg), ours(rd, f"text-{f}")
        lbw = (load_json(rd / "llama" / f"membw-{f}.json") or {}).get("best_gbs")
        if not O.get("bw_fraction"):  # older layout: one fresh-buffer probe for the run
            bw = O.get("mem_bw_gbs") or fresh.get("best_gbs")
            bpw = BYTES_PER_WEIGHT.get(f)
            if bw and nparams and bpw and O.get("tg"):
                O["bw_fraction"] = O["tg"] / (bw * 1e9 / (nparams * bpw))
            lbw = lbw or bw
        if lbw and L.get("model_size") and L.get("tg"):
            L["bw_gbs"] = lbw
            L["bw_fraction"] = L["tg"] / (lbw * 1e9 / L["model_size"])
        d["formats"][f] = {"llama": L, "qwen3vl": O}
    return d


def round_table(d: dict, meta: dict, P) -> None:
    pp, tg = meta.get("pp", 512), meta.get("tg", 128)
    sizes = [int(s) for s in str(meta.get("vision", "")).split(",") if s]
    vis_llama, vis_ours = d["vision"]["llama"], d["vision"]["qwen3vl"]
    vhead = " | ".join(f"vision {s}² s" for s in sizes)
    P(f"| format | engine | pp{pp} tok/s | tg{tg} tok/s | tg % of BW limit (probe GB/s) | {vhead} | peak RSS MB (text run) |")
    P("|---|---|---|---|---|" + "---|" * len(sizes) + "---|")
    for f, e in d["formats"].items():
        L, O = e["llama"], e["qwen3vl"]
        vis = f == "bf16"  # the vision encoders run once: llama.cpp mmproj F16, qwen3vl bf16 weights
        vl = [fmt(vis_llama[s].get("median_s"), "%.3f") if vis else "" for s in sizes]
        vo = [fmt(vis_ours.get(f"vision{s}"), "%.3f") if vis else "" for s in sizes]
        vr = [ratio(vis_ours.get(f"vision{s}"), vis_llama[s].get("median_s"),
                    TARGETS["vision"] if s == 1024 else None, lower_is_better=True) if vis else "" for s in sizes]
        pct_l = (fmt(100 * L["bw_fraction"], "%.0f%%") + f" ({fmt(L.get('bw_gbs'), '%.1f')})") if L.get("bw_fraction") else "-"
        pct_o = "-"
        if O.get("bw_fraction"):
            pct_o = fmt(100 * O["bw_fraction"], "%.0f%%") + f" ({fmt(O.get('mem_bw_gbs'), '%.1f')})"
            if O.get("bw_fraction_min") is not None:
                pct_o += f", reps {100 * O['bw_fraction_min']:.0f}..{100 * O['bw_fraction_max']:.0f}%"
        P(f"| {f} | llama.cpp | {fmt(L.get('pp'))} | {fmt(L.get('tg'))} | {pct_l} | " + " | ".join(vl)
          + f" | {fmt(L.get('rss_mb'), '%.0f')} |")
        if f == "q4_k_m":
            continue
        P(f"| {f} | qwen3vl | {fmt(O.get('pp'))} | {fmt(O.get('tg'))} | {pct_o} | " + " | ".join(vo)
          + f" | {fmt(O.get('rss_mb'), '%.0f')} |")
        bw_ok = "-" if not O.get("bw_fraction") else ("ok" if O["bw_fraction"] >= TARGETS["bw"] else "MISS") + " (>= 85%)"
        rss_ok = "-"
        if O.get("rss_mb") and L.get("rss_mb"):
            rss_ok = f"{O['rss_mb'] / L['rss_mb']:.2f}x {'ok' if O['rss_mb'] <= L['rss_mb'] else 'MISS'} (<= 1)"
        P(f"| {f} | **qwen3vl / llama.cpp** | {ratio(O.get('pp'), L.get('pp'), TARGETS['pp'])} | "
          f"{ratio(O.get('tg'), L.get('tg'), TARGETS['tg'])} | {bw_ok} | " + " | ".join(vr) + f" | {rss_ok} |")
    if sizes:
        P("")
        P("vision: llama.cpp = llama-mtmd-cli, mmproj F16, time of `mtmd batch encoding` per image (warm-up "
          "image dropped), peak RSS " + ", ".join(f"{s}²: {fmt(vis_llama[s].get('rss_mb'), '%.0f')} MB" for s in sizes)
          + " (mmproj + a text stand-in of DeepStack count + 1 layers); qwen3vl = `bench --vision` (bf16), peak RSS "
          + f"{fmt(vis_ours.get('rss_mb'), '%.0f')} MB. Vision ratio = llama.cpp time / qwen3vl time.")
    P(f"fresh-buffer bandwidth probe at the end of the round (bench/membw.c, 1 GiB): "
      f"{fmt(d['membw'].get('best_gbs'), '%.1f')} GB/s")


def spread(vals, target=None, pct=False) -> str:
    """median [min..max] of a list of ratios (or fractions, pct=True), with the target verdict."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    m = statistics.median(vals)
    f = (lambda x: f"{100 * x:.0f}%") if pct else (lambda x: f"{x:.2f}x")
    s = f"{f(m)} [{f(min(vals))}..{f(max(vals))}]"
    if target is not None:
        s += f" {'ok' if m >= target else 'MISS'}"
    return s


def div(a, b):
    return a / b if (a is not None and b) else None


def main() -> int:
    out = Path(sys.argv[1])
    meta = load_json(out / "meta.json") or {}
    reps, threads = meta.get("reps"), meta.get("threads")
    pp, tg = meta.get("pp", 512), meta.get("tg", 128)
    sizes = [int(s) for s in str(meta.get("vision", "")).split(",") if s]
    nparams = text_params(meta.get("model", ""))
    rounds = sorted((p for p in out.glob("round-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1]))
    rounds = rounds or [out]
    data = [collect(rd, meta, nparams) for rd in rounds]
    summary = {"meta": meta, "text_params": nparams, "rounds": data}

    lines = []
    P = lines.append
    P(f"## qwen3vl vs llama.cpp ({threads} threads, {len(rounds)} round(s) of {reps} reps + 1 warm-up, medians)\n")
    P(f"model `{meta.get('model')}`; llama.cpp from llama-cpp-python {meta.get('llama_cpp_python')} sdist; "
      f"qwen3vl {meta.get('qwen3vl_git')}; CPU {meta.get('cpu')}, {meta.get('nproc')} cpus, {meta.get('mem_gib')} GiB")
    P(f"load at start: `{str(meta.get('uptime_start', '')).strip()}`; at end: "
      f"`{str(load_json(out / 'uptime_end.json') or '').strip()}`")
    P("decode bandwidth limit = read bandwidth of the engine's own weight bytes right around its run / those "
      "bytes per token (qwen3vl: `bench --mem-bw 1`, probes before and after each repetition; llama.cpp: "
      "bench/membw.c reading its GGUF right after llama-bench)\n")
    for k, (rd, d) in enumerate(zip(rounds, data)):
        if len(rounds) > 1:
            first = "llama.cpp" if (k + 1) % 2 == 1 else "qwen3vl"
            P(f"### round {k + 1} ({first} first)\n")
        round_table(d, meta, P)
        P("")
    if len(rounds) > 1:
        P(f"### across the {len(rounds)} rounds: median [min..max] of the per-round ratios\n")
        vhead = " | ".join(f"vision {s}²" for s in sizes)
        P(f"| format | pp{pp} | tg{tg} | tg{tg} at equal bandwidth | qwen3vl tg % of BW limit | llama.cpp tg % of BW limit | {vhead} | peak RSS (max over rounds) |")
        P("|---|---|---|---|---|---|" + "---|" * len(sizes) + "---|")
        for f in data[0]["formats"]:
            Ls = [d["formats"][f]["llama"] for d in data]
            Os = [d["formats"][f]["qwen3vl"] for d in data]
            if f == "q4_k_m":
                continue
            vis = f == "bf16"
            vr = []
            for s in sizes:
                r = [div(d["vision"]["llama"][s].get("median_s"), d["vision"]["qwen3vl"].get(f"vision{s}")) for d in data]
                vr.append(spread(r, TARGETS["vision"] if s == 1024 else None) if vis else "")
            lr = [x.get("rss_mb") for x in Ls if x.get("rss_mb")]
            orr = [x.get("rss_mb") for x in Os if x.get("rss_mb")]
            rss = "-"
            if lr and orr:
                rss = f"{max(orr):.0f} vs {max(lr):.0f} MB = {max(orr) / max(lr):.2f}x {'ok' if max(orr) <= max(lr) else 'MISS'}"
            P(f"| {f} | {spread([div(o.get('pp'), l.get('pp')) for o, l in zip(Os, Ls)], TARGETS['pp'])} | "
              f"{spread([div(o.get('tg'), l.get('tg')) for o, l in zip(Os, Ls)], TARGETS['tg'])} | "
              f"{spread([div(div(o.get('tg'), o.get('mem_bw_gbs')), div(l.get('tg'), l.get('bw_gbs'))) for o, l in zip(Os, Ls)])} | "
              f"{spread([o.get('bw_fraction') for o in Os], TARGETS['bw'], pct=True)} | "
              f"{spread([l.get('bw_fraction') for l in Ls], pct=True)} | " + " | ".join(vr) + f" | {rss} |")
        P("")
    hf = load_json(out / "hf.json")
    if hf:
        vhead = " | ".join(f"vision {s}² s" for s in sizes)
        P(f"| HF transformers (CPU, sdpa) | pp{pp} tok/s | tg{tg} tok/s | " + vhead + " | peak RSS MB |")
        P("|---|---|---|" + "---|" * len(sizes) + "---|")
        for r in hf:
            if "error" in r:
                P(f"| {r.get('dtype')} | error {r['error']} |")
                continue
            res = {e["test"]: e for e in r["results"]}
            g = lambda pre, k: next((e[k] for t, e in res.items() if t.startswith(pre)), None)
            P(f"| {r['dtype']} (torch {r.get('torch')}, transformers {r.get('transformers')}) | "
              f"{fmt(g('pp', 'tok_s'))} | {fmt(g('tg', 'tok_s'))} | "
              + " | ".join(fmt(g(f'vision {s}x', 'median_s'), '%.3f') for s in sizes)
              + f" | {fmt(r.get('peak_rss_mb'), '%.0f')} |")
        summary["hf"] = hf
    for rd in rounds:
        for f in data[0]["formats"]:
            for n in (f"text-{f}", f"text-{f}-pp", f"text-{f}-tg"):
                lp = rd / "qwen3vl" / f"{n}.log"
                if lp.is_file() and not load_json(rd / "qwen3vl" / f"{n}.json"):
                    err = lp.read_text(errors="replace").strip().splitlines()
                    P(f"\nqwen3vl {n} run failed ({rd.name}): `{err[-1] if err else 'no output'}`")
    if meta.get("qwen3vl_has_quant") == 0 and any(f in ("q8_0", "q4_0") for f in data[0]["formats"]):
        P("\nqwen3vl bench had no --quant flag: its q8_0/q4_0 rows are empty.")
    print("\n".join(lines))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

// The web chat page served at GET / (plain HTML + JS, no external resources).
// ?autotest=1 runs a self-test (used by the headless-browser test): it sends a prompt with a
// canvas-generated image as a streamed request, then the same request non-streamed, and writes
// "AUTOTEST-DONE match=<0|1> chunks=<n>" into #status.
#pragma once

namespace qwen3vl::server {

inline constexpr const char* kWebPage = R"QWEN3VLHTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>qwen3vl chat</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 1rem auto; padding: 0 1rem; color: #222; }
 #log { border: 1px solid #ccc; border-radius: 6px; padding: .5rem; min-height: 12rem; margin-bottom: .5rem; }
 .msg { margin: .4rem 0; white-space: pre-wrap; word-wrap: break-word; }
 .user { color: #0645ad; } .assistant { color: #222; } .error { color: #b00020; }
 .msg img { max-width: 8rem; max-height: 8rem; display: block; margin: .2rem 0; }
 textarea { width: 100%; box-sizing: border-box; min-height: 4rem; }
 #row { display: flex; gap: .5rem; align-items: center; margin: .4rem 0; flex-wrap: wrap; }
 #preview { max-height: 3rem; }
 #stats { color: #666; font-size: .85rem; }
</style>
</head>
<body>
<h1>qwen3vl chat</h1>
<div id="log"></div>
<textarea id="prompt" placeholder="Type a message (Ctrl+Enter sends)"></textarea>
<div id="row">
 <input type="file" id="file" accept="image/*">
 <img id="preview" alt="">
 <label>max tokens <input type="number" id="maxtok" value="256" min="1" style="width:5rem"></label>
 <label>temperature <input type="number" id="temp" value="0" min="0" max="2" step="0.1" style="width:4rem"></label>
 <label>API key <input type="password" id="key" style="width:8rem"></label>
 <button id="send">Send</button>
 <button id="stop" disabled>Stop</button>
 <button id="reset">New chat</button>
</div>
<div id="stats"></div>
<div id="status"></div>
<div id="autotest-text"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let history = [];
let attached = null;       // data URL of the image to send with the next message
let controller = null;

function addMsg(cls, text, img) {
  const d = document.createElement("div");
  d.className = "msg " + cls;
  if (img) { const i = document.createElement("img"); i.src = img; d.appendChild(i); }
  const s = document.createElement("span");
  s.textContent = text;
  d.appendChild(s);
  $("log").appendChild(d);
  return s;
}

$("file").addEventListener("change", () => {
  const f = $("file").files[0];
  if (!f) { attached = null; $("preview").removeAttribute("src"); return; }
  const r = new FileReader();
  r.onload = () => { attached = r.result; $("preview").src = attached; };
  r.readAsDataURL(f);
});

function buildBody(text, image, stream) {
  const content = [];
  if (image) content.push({ type: "image_url", image_url: { url: image } });
  content.push({ type: "text", text: text });
  const messages = history.concat([{ role: "user", content: content }]);
  const body = { messages: messages, stream: stream, max_tokens: parseInt($("maxtok").value, 10) || 256,
                 temperature: parseFloat($("temp").value) || 0 };
  if (stream) body.stream_options = { include_usage: true };
  return body;
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if ($("key").value) h["Authorization"] = "Bearer " + $("key").value;
  return h;
}

// POSTs a streamed request; calls onDelta(text) per content delta; resolves with
// { text, chunks, finish, usage, ext }.
async function streamChat(body, onDelta, signal, onHeaders) {
  const resp = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: signal });
  if (onHeaders) onHeaders(resp);
  if (!resp.ok) {
    let msg = "HTTP " + resp.status;
    try { const j = await resp.json(); if (j.error) msg += ": " + j.error.message; } catch (e) {}
    throw new Error(msg);
  }
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = "", text = "", chunks = 0, finish = null, usage = null, ext = null, done = false;
  while (!done) {
    const r = await reader.read();
    if (r.done) break;
    buf += dec.decode(r.value, { stream: true });
    let idx;
    while ((idx = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, idx);
      buf = buf.slice(idx + 2);
      for (const line of ev.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") { done = true; break; }
        const j = JSON.parse(data);
        if (j.error) throw new Error(j.error.message);
        if (j.usage) usage = j.usage;
        if (j.qwen3vl) ext = j.qwen3vl;
        const c = j.choices && j.choices[0];
        if (!c) continue;
        if (c.delta && typeof c.delta.content === "string" && c.delta.content.length) {
          text += c.delta.content; chunks++; onDelta(c.delta.content);
        }
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
  }
  return { text: text, chunks: chunks, finish: finish, usage: usage, ext: ext };
}

async function send() {
  const text = $("prompt").value;
  if (!text.trim() && !attached) return;
  const image = attached;
  addMsg("user", text, image);
  const out = addMsg("assistant", "");
  const body = buildBody(text, image, true);
  $("prompt").value = ""; attached = null; $("file").value = ""; $("preview").removeAttribute("src");
  $("send").disabled = true; $("stop").disabled = false;
  controller = new AbortController();
  const t0 = performance.now();
  try {
    const r = await streamChat(body, (d) => { out.textContent += d; }, controller.signal);
    history = body.messages.concat([{ role: "assistant", content: r.text }]);
    const s = [];
    if (r.usage) s.push(r.usage.prompt_tokens + " prompt + " + r.usage.completion_tokens + " completion tokens");
    if (r.ext && r.ext.timings) s.push("decode " + r.ext.timings.decode_tok_s.toFixed(1) + " tok/s");
    if (r.ext && r.ext.media) for (const m of r.ext.media) s.push(m.kind + " " + m.width + "x" + m.height + " -> " + m.resized_width + "x" + m.resized_height + " (" + m.tokens + " tokens)");
    s.push("finish: " + r.finish, ((performance.now() - t0) / 1000).toFixed(1) + " s");
    $("stats").textContent = s.join(" | ");
  } catch (e) {
    addMsg("error", String(e.message || e));
  } finally {
    $("send").disabled = false; $("stop").disabled = true; controller = null;
  }
}

$("send").addEventListener("click", send);
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
$("reset").addEventListener("click", () => { history = []; $("log").textContent = ""; $("stats").textContent = ""; });
$("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && e.ctrlKey) send(); });

async function autotest() {
  $("status").textContent = "AUTOTEST-RUNNING";
  try {
    const c = document.createElement("canvas");
    c.width = 48; c.height = 40;
    const g = c.getContext("2d");
    g.fillStyle = "#3366cc"; g.fillRect(0, 0, 48, 40);
    g.fillStyle = "#ffcc00"; g.fillRect(8, 6, 20, 18);
    const img = c.toDataURL("image/png");
    $("maxtok").value = "8"; $("temp").value = "0";
    const body = buildBody("Describe this image.", img, true);
    const body2 = buildBody("Describe this image.", img, false);
    const out = addMsg("assistant", "");
    // Headless --virtual-time-budget only waits while a fetch is pending, and a streamed body
    // does not count: as soon as the stream's headers arrive (the server sends them once the
    // stream has the engine), send the plain request, which queues behind the stream and stays
    // pending until the stream is done.
    let plain = null;
    const r = await streamChat(body, (d) => { out.textContent += d; }, undefined, () => {
      plain = fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body2) })
                .then((resp) => resp.text());
    });
    if (!plain) throw new Error("the stream sent no text");
    const ref = JSON.parse(await plain).choices[0].message.content;
    $("autotest-text").textContent = "TEXT:" + encodeURIComponent(r.text) + ":END";
    $("status").textContent = "AUTOTEST-DONE match=" + (ref === r.text ? 1 : 0) + " chunks=" + r.chunks +
                              " finish=" + r.finish;
  } catch (e) {
    $("status").textContent = "AUTOTEST-FAILED " + String(e.message || e);
  }
}
if (new URLSearchParams(location.search).get("autotest") === "1") autotest();
</script>
</body>
</html>
)QWEN3VLHTML";

}  // namespace qwen3vl::server

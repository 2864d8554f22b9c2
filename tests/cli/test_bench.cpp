// `qwen3vl bench --json` on the tiny model: the rows it promises, and the decode bandwidth rows
// (one probe reading and one fraction per timed repetition, over exactly the decoder's bytes).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/files.h"
#include "common/models.h"
#include "core/safetensors.h"

using namespace qwen3vl;

using test::run_capture;

TEST(BenchCommand, JsonRowsAndPerRepetitionBandwidth) {
  auto dir = test::generated_model("--preset tiny --seed 0 --dtype bf16");
  int status = -1;
  const std::string out = run_capture(std::string(QWEN3VL_CLI) + " bench -m '" + dir.string() +
                                          "' -p 8 -n 4 --depth 0 --vision 64 --ttft 0 -r 3 -t 2 --json 2>/dev/null",
                                      &status);
  ASSERT_EQ(status, 0) << out;
  const auto j = nlohmann::json::parse(out);
  std::vector<std::string> tests;
  for (const auto& r : j["results"]) tests.push_back(r["test"]);
  EXPECT_EQ(tests, (std::vector<std::string>{"pp8", "tg4", "vision 64x64 (16 patches)"}));

  // Bytes per decode step: every model.language_model.* tensor but the embedding table, plus the
  // lm_head (the embedding itself when tied), from the checkpoint file.
  double bytes = 0, embed = 0;
  bool has_lm_head = false;
  auto f = SafetensorsFile::open(dir / "model.safetensors");
  for (const auto& ti : f->infos()) {
    const Tensor t = f->get(ti.name);
    if (ti.name == "model.language_model.embed_tokens.weight")
      embed = static_cast<double>(t.nbytes());
    else if (ti.name.rfind("model.language_model.", 0) == 0 || ti.name == "lm_head.weight")
      bytes += static_cast<double>(t.nbytes());
    has_lm_head = has_lm_head || ti.name == "lm_head.weight";
  }
  if (!has_lm_head) bytes += embed;  // tied: the embedding is the output projection
  EXPECT_GT(bytes, embed);
  EXPECT_EQ(j["decode_weight_bytes"].get<double>(), bytes);

  ASSERT_EQ(j["bandwidth"].size(), 1u);
  const auto& b = j["bandwidth"][0];
  EXPECT_EQ(b["test"], "tg4");
  ASSERT_EQ(b["per_rep_fraction"].size(), 3u);
  ASSERT_EQ(b["per_rep_mem_bw_gbs"].size(), 3u);
  ASSERT_EQ(b["per_rep_tok_s"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const double gbs = b["per_rep_mem_bw_gbs"][i], rate = b["per_rep_tok_s"][i], frac = b["per_rep_fraction"][i];
    EXPECT_GT(gbs, 0.0);
    EXPECT_NEAR(frac, rate / (gbs * 1e9 / bytes), 1e-9 * frac);
  }
  std::vector<double> fr = b["per_rep_fraction"];
  std::sort(fr.begin(), fr.end());
  EXPECT_EQ(b["fraction_of_limit"].get<double>(), fr[1]);  // the median of 3
  EXPECT_EQ(b["fraction_min"].get<double>(), fr[0]);
  EXPECT_EQ(b["fraction_max"].get<double>(), fr[2]);
  EXPECT_GT(j["mem_bw_gbs"].get<double>(), 0.0);
}

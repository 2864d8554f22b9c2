#include "text/generation.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace qwen3vl {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Softmax of the row in double (entries at -inf get 0).
std::vector<double> softmax_double(const std::vector<float>& logits) {
  float mx = kNegInf;
  for (float v : logits) mx = std::max(mx, v);
  std::vector<double> p(logits.size(), 0.0);
  if (mx == kNegInf) return p;
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    p[i] = logits[i] == kNegInf ? 0.0 : std::exp(static_cast<double>(logits[i]) - mx);
    sum += p[i];
  }
  for (double& v : p) v /= sum;
  return p;
}

template <typename T>
T json_number(const nlohmann::json& j, const char* field) {
  if (!j.is_number()) throw Error(std::string("generation_config: field \"") + field + "\" must be a number, got " + j.dump());
  return j.get<T>();
}

std::vector<int64_t> json_ids(const nlohmann::json& j, const char* field) {
  std::vector<int64_t> ids;
  if (j.is_null()) return ids;
  if (j.is_number_integer()) return {j.get<int64_t>()};
  if (j.is_array()) {
    for (const auto& e : j) {
      if (!e.is_number_integer())
        throw Error(std::string("generation_config: field \"") + field + "\" must be an int or a list of ints");
      ids.push_back(e.get<int64_t>());
    }
    return ids;
  }
  throw Error(std::string("generation_config: field \"") + field + "\" must be an int or a list of ints, got " + j.dump());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// GenerationConfig
// ---------------------------------------------------------------------------------------------
GenerationConfig GenerationConfig::from_json(const nlohmann::json& j, const GenerationConfig& base) {
  QWEN3VL_CHECK(j.is_object(), "generation_config: expected a JSON object");
  GenerationConfig c = base;
  auto has = [&](const char* k) { return j.contains(k) && !j.at(k).is_null(); };
  if (has("do_sample")) {
    QWEN3VL_CHECK(j.at("do_sample").is_boolean(), "generation_config: field \"do_sample\" must be true or false");
    c.do_sample = j.at("do_sample").get<bool>();
  }
  if (has("temperature")) c.temperature = json_number<float>(j.at("temperature"), "temperature");
  if (has("top_k")) c.top_k = json_number<int>(j.at("top_k"), "top_k");
  if (has("top_p")) c.top_p = json_number<float>(j.at("top_p"), "top_p");
  if (has("min_p")) c.min_p = json_number<float>(j.at("min_p"), "min_p");
  if (has("repetition_penalty")) c.repetition_penalty = json_number<float>(j.at("repetition_penalty"), "repetition_penalty");
  if (has("presence_penalty")) c.presence_penalty = json_number<float>(j.at("presence_penalty"), "presence_penalty");
  if (has("frequency_penalty")) c.frequency_penalty = json_number<float>(j.at("frequency_penalty"), "frequency_penalty");
  if (has("max_new_tokens")) c.max_new_tokens = json_number<int64_t>(j.at("max_new_tokens"), "max_new_tokens");
  if (has("eos_token_id")) c.eos_token_id = json_ids(j.at("eos_token_id"), "eos_token_id");
  if (has("pad_token_id")) {
    auto v = json_ids(j.at("pad_token_id"), "pad_token_id");
    if (!v.empty()) c.pad_token_id = v[0];
  }
  if (has("bos_token_id")) {
    auto v = json_ids(j.at("bos_token_id"), "bos_token_id");
    if (!v.empty()) c.bos_token_id = v[0];
  }
  if (has("stop_strings")) {
    const auto& s = j.at("stop_strings");
    c.stop_strings.clear();
    if (s.is_string()) c.stop_strings.push_back(s.get<std::string>());
    else if (s.is_array()) {
      for (const auto& e : s) {
        QWEN3VL_CHECK(e.is_string(), "generation_config: field \"stop_strings\" must be a string or list of strings");
        c.stop_strings.push_back(e.get<std::string>());
      }
    } else throw Error("generation_config: field \"stop_strings\" must be a string or list of strings");
  }
  if (has("seed")) c.seed = json_number<uint64_t>(j.at("seed"), "seed");
  return c;
}

GenerationConfig GenerationConfig::load(const std::filesystem::path& path, const GenerationConfig& base) {
  std::ifstream f(path);
  QWEN3VL_CHECK(f.good(), "cannot open " + path.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path.string() + ": invalid JSON: " + e.what());
  }
  try {
    return from_json(j, base);
  } catch (const Error& e) {
    throw Error(path.string() + ": " + e.what());
  }
}

GenerationConfig GenerationConfig::from_json(const nlohmann::json& j) { return from_json(j, GenerationConfig{}); }
GenerationConfig GenerationConfig::load(const std::filesystem::path& path) { return load(path, GenerationConfig{}); }

GenerationConfig GenerationConfig::for_model(const std::filesystem::path& dir, const Qwen3VLConfig& config) {
  GenerationConfig base;
  for (int id : config.text_config.eos_token_id) base.eos_token_id.push_back(id);
  const auto path = dir / "generation_config.json";
  if (!std::filesystem::exists(path)) return base;
  GenerationConfig c = load(path, base);
  if (c.eos_token_id.empty()) c.eos_token_id = base.eos_token_id;
  return c;
}

void GenerationConfig::validate() const {
  QWEN3VL_CHECK(std::isfinite(temperature) && temperature >= 0, "temperature must be >= 0");
  QWEN3VL_CHECK(top_k >= 0, "top_k must be >= 0 (0 = off)");
  QWEN3VL_CHECK(top_p > 0 && top_p <= 1, "top_p must be in (0, 1]");
  QWEN3VL_CHECK(min_p >= 0 && min_p <= 1, "min_p must be in [0, 1]");
  QWEN3VL_CHECK(repetition_penalty > 0 && std::isfinite(repetition_penalty), "repetition_penalty must be > 0");
  QWEN3VL_CHECK(std::isfinite(presence_penalty) && std::isfinite(frequency_penalty),
                "presence/frequency penalties must be finite");
  QWEN3VL_CHECK(max_new_tokens >= 0, "max_new_tokens must be >= 0");
  for (const auto& s : stop_strings) QWEN3VL_CHECK(!s.empty(), "stop strings must not be empty");
}

// ---------------------------------------------------------------------------------------------
// Logits processors
// ---------------------------------------------------------------------------------------------
void apply_repetition_penalty(std::vector<float>& logits, const std::vector<int64_t>& context, float penalty) {
  if (penalty == 1.0f) return;
  // RepetitionPenaltyLogitsProcessor: gather each id once (scatter of duplicates writes the same
  // value), score < 0 ? score * penalty : score / penalty.
  std::unordered_set<int64_t> seen;
  for (int64_t id : context) {
    if (id < 0 || id >= static_cast<int64_t>(logits.size()) || !seen.insert(id).second) continue;
    float& l = logits[static_cast<size_t>(id)];
    l = l < 0 ? l * penalty : l / penalty;
  }
}

void apply_presence_frequency_penalty(std::vector<float>& logits, const std::vector<int64_t>& generated,
                                      float presence, float frequency) {
  if (presence == 0.0f && frequency == 0.0f) return;
  std::unordered_map<int64_t, int64_t> counts;
  for (int64_t id : generated)
    if (id >= 0 && id < static_cast<int64_t>(logits.size())) ++counts[id];
  for (const auto& [id, n] : counts)
    logits[static_cast<size_t>(id)] -= presence + frequency * static_cast<float>(n);
}

void apply_temperature(std::vector<float>& logits, float temperature) {
  if (temperature == 1.0f) return;
  for (float& l : logits) l = l / temperature;  // scores / self.temperature
}

void apply_top_k(std::vector<float>& logits, int top_k) {
  if (top_k <= 0 || static_cast<size_t>(top_k) >= logits.size()) return;
  // indices_to_remove = scores < topk(scores, k)[..., -1]
  std::vector<float> v = logits;
  std::nth_element(v.begin(), v.begin() + (top_k - 1), v.end(), std::greater<float>());
  const float kth = v[static_cast<size_t>(top_k - 1)];
  for (float& l : logits)
    if (l < kth) l = kNegInf;
}

void apply_top_p(std::vector<float>& logits, float top_p) {
  if (top_p >= 1.0f) return;
  // TopPLogitsWarper: sort ascending, cumulative softmax, remove where cum <= 1 - top_p, keep
  // the last (largest) token.
  const std::vector<double> p = softmax_double(logits);
  // Only finite entries take part (-inf ones have probability 0 and are already removed), so
  // after top_k this sorts k values instead of the vocabulary.
  std::vector<int64_t> order;
  for (size_t i = 0; i < logits.size(); ++i)
    if (logits[i] != kNegInf) order.push_back(static_cast<int64_t>(i));
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[a] < logits[b]; });
  const double thresh = 1.0 - static_cast<double>(top_p);
  double cum = 0;
  for (size_t i = 0; i + 1 < order.size(); ++i) {
    cum += p[static_cast<size_t>(order[i])];
    if (cum <= thresh) logits[static_cast<size_t>(order[i])] = kNegInf;
    else break;  // cum only grows
  }
}

void apply_min_p(std::vector<float>& logits, float min_p) {
  if (min_p <= 0.0f) return;
  // MinPLogitsWarper: remove probs < min_p * max(probs), keep at least the top token.
  const std::vector<double> p = softmax_double(logits);
  const int64_t top = argmax(logits.data(), static_cast<int64_t>(logits.size()));
  const double thr = static_cast<double>(min_p) * p[static_cast<size_t>(top)];
  for (size_t i = 0; i < logits.size(); ++i)
    if (p[i] < thr && static_cast<int64_t>(i) != top) logits[i] = kNegInf;
}

int64_t argmax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (logits[i] > logits[best] || (std::isnan(logits[i]) && !std::isnan(logits[best]))) best = i;
  return best;
}

float top2_margin(const float* logits, int64_t n) {
  if (n < 2) return std::numeric_limits<float>::infinity();
  float a = kNegInf, b = kNegInf;
  for (int64_t i = 0; i < n; ++i) {
    if (logits[i] > a) { b = a; a = logits[i]; }
    else if (logits[i] > b) b = logits[i];
  }
  return a - b;
}

// ---------------------------------------------------------------------------------------------
// Sampler
// ---------------------------------------------------------------------------------------------
Sampler::Sampler(const GenerationConfig& cfg) : cfg_(cfg), rng_(cfg.seed) { cfg_.validate(); }

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int64_t Sampler::next(const float* raw, int64_t vocab, const std::vector<int64_t>& prompt,
                      const std::vector<int64_t>& generated) {
  QWEN3VL_CHECK(vocab > 0, "Sampler: empty logits");
  std::vector<float> logits(raw, raw + vocab);
  if (cfg_.repetition_penalty != 1.0f) {
    std::vector<int64_t> context = prompt;
    context.insert(context.end(), generated.begin(), generated.end());
    apply_repetition_penalty(logits, context, cfg_.repetition_penalty);
  }
  apply_presence_frequency_penalty(logits, generated, cfg_.presence_penalty, cfg_.frequency_penalty);
  if (cfg_.greedy()) return argmax(logits.data(), vocab);

  apply_temperature(logits, cfg_.temperature);
  apply_top_k(logits, cfg_.top_k);
  apply_top_p(logits, cfg_.top_p);
  apply_min_p(logits, cfg_.min_p);
  // probs = softmax(scores); next = multinomial(probs, 1)
  const std::vector<double> p = softmax_double(logits);
  const double u = uniform();
  double cum = 0;
  int64_t last = -1;
  for (int64_t i = 0; i < vocab; ++i) {
    if (p[static_cast<size_t>(i)] <= 0) continue;
    cum += p[static_cast<size_t>(i)];
    last = i;
    if (u < cum) return i;
  }
  QWEN3VL_CHECK(last >= 0, "Sampler: every token was filtered out (logits are all -inf or NaN)");
  return last;  // rounding: u landed above the summed mass
}

// ---------------------------------------------------------------------------------------------
// generate
// ---------------------------------------------------------------------------------------------
const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Length: return "length";
    case FinishReason::Eos: return "eos";
    case FinishReason::StopString: return "stop";
    case FinishReason::Cancelled: return "cancelled";
  }
  return "?";
}

namespace {

// Length of the longest suffix of `text` that is a proper prefix of a stop string.
size_t held_back(const std::string& text, const std::vector<std::string>& stops) {
  size_t best = 0;
  for (const auto& s : stops)
    for (size_t k = std::min(s.size() - 1, text.size()); k > best; --k)
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        best = k;
        break;
      }
  return best;
}

}  // namespace

GenerationResult generate(const Qwen3VLForConditionalGeneration& model, const MultimodalInputs& prompt,
                          KVCache& cache, const GenerationConfig& cfg, const GenerateOptions& opts) {
  cfg.validate();
  QWEN3VL_CHECK(cfg.stop_strings.empty() || opts.detokenize,
                "stop strings need a detokenizer (GenerateOptions::detokenize)");
  GenerationResult res;
  res.prompt_tokens = static_cast<int64_t>(prompt.input_ids.size());
  res.min_margin = std::numeric_limits<float>::infinity();
  cache.clear();
  Tensor logits = model.forward(prompt, cache, 1, opts.dump);
  const int64_t vocab = logits.size(1);
  Sampler sampler(cfg);
  std::string& text = res.text;
  size_t emitted = 0;
  size_t max_stop = 0;
  for (const auto& s : cfg.stop_strings) max_stop = std::max(max_stop, s.size());
  bool stopped = false;

  for (int64_t step = 0; step < cfg.max_new_tokens; ++step) {
    const float* row = logits.data<float>();
    if (opts.on_logits) opts.on_logits(row, vocab);
    res.min_margin = std::min(res.min_margin, top2_margin(row, vocab));
    const int64_t tok = sampler.next(row, vocab, prompt.input_ids, res.tokens);
    res.tokens.push_back(tok);
    if (std::find(cfg.eos_token_id.begin(), cfg.eos_token_id.end(), tok) != cfg.eos_token_id.end()) {
      res.finish = FinishReason::Eos;
      stopped = true;
      break;
    }
    if (opts.detokenize) {
      const size_t old = text.size();
      text += opts.detokenize(tok);
      // Earliest stop string occurrence that ends in the new text.
      size_t cut = std::string::npos;
      for (const auto& s : cfg.stop_strings) {
        const size_t from = old >= s.size() - 1 ? old - (s.size() - 1) : 0;
        const size_t pos = text.find(s, from);
        if (pos != std::string::npos) cut = std::min(cut, pos);
      }
      if (cut != std::string::npos) {
        text.resize(std::max(cut, emitted));
        res.finish = FinishReason::StopString;
        stopped = true;
      }
    }
    if (opts.on_token) {
      const size_t safe = stopped ? text.size() : std::max(emitted, text.size() - held_back(text, cfg.stop_strings));
      const std::string_view delta(text.data() + emitted, safe - emitted);
      emitted = safe;
      if (!opts.on_token(tok, delta)) {
        res.finish = FinishReason::Cancelled;
        return res;
      }
    }
    if (stopped || step + 1 == cfg.max_new_tokens) break;
    logits = model.forward_tokens({tok}, cache, 1);
  }
  if (!stopped) res.finish = FinishReason::Length;
  if (opts.on_token && emitted < text.size()) opts.on_token(-1, std::string_view(text).substr(emitted));
  return res;
}

}  // namespace qwen3vl

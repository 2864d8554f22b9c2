// Byte-level BPE tokenizer reading a HuggingFace `tokenizers` tokenizer.json (Qwen2/Qwen3/Qwen3-VL).
//
// Reproduces `tokenizers` (Rust) encode/decode for the structure Qwen uses (spec section 7):
//   added tokens (matched atomically in the raw text, leftmost-longest, with their
//   lstrip/rstrip/single_word/normalized flags) -> NFC normalizer -> Split(Qwen regex, Isolated)
//   -> ByteLevel(use_regex=false) -> BPE (merges by rank) ; decoder ByteLevel + from_utf8_lossy.
// Anything else in tokenizer.json (another normalizer, pre-tokenizer, regex, model type,
// continuing_subword_prefix, dropout, truncation/padding, ...) is refused at load with an Error
// that names the field.
//
// Thread safety: a loaded Tokenizer is immutable except for an internal, mutex-guarded BPE
// cache; encode/decode may be called from several threads. Copies share the loaded tables.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qwen3vl {

// One entry of tokenizer.json "added_tokens" (HF AddedToken; defaults as in tokenizers).
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

class Tokenizer {
 public:
  Tokenizer() = default;  // empty; only useful as a placeholder (encode/decode throw)

  // `path` is a tokenizer.json file or a folder containing one.
  static Tokenizer load(const std::filesystem::path& path);
  // Same from the JSON text; `origin` names the source in error messages.
  static Tokenizer from_json(std::string_view json_text, const std::string& origin = "tokenizer.json");

  // Text (must be valid UTF-8, else Error) -> ids. Same as HF `tokenizer.encode(text)` with
  // add_special_tokens=true for Qwen (no BOS/EOS is added) and split_special_tokens=false.
  std::vector<int32_t> encode(std::string_view text) const;
  // Appends to `out` (no per-call allocation once `out` has capacity).
  void encode_into(std::string_view text, std::vector<int32_t>& out) const;

  // Ids -> text, HF `decode(ids, skip_special_tokens)` with clean_up_tokenization_spaces=false:
  // unknown ids are dropped, bytes of all tokens are concatenated and invalid UTF-8 is replaced
  // by U+FFFD per maximal invalid subsequence (Rust String::from_utf8_lossy).
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const {
    return decode(std::span<const int32_t>(ids.data(), ids.size()), skip_special_tokens);
  }

  std::optional<int32_t> token_to_id(std::string_view token) const;  // added tokens first, then vocab
  std::string id_to_token(int32_t id) const;  // the token string ("Ġworld", "<|im_end|>"); "" if unknown
  int32_t vocab_size() const;                 // max id + 1 over vocab and added tokens (151669 for Qwen3)
  bool is_special(int32_t id) const;          // added token with special=true
  bool is_added(int32_t id) const;            // any added token
  const std::vector<AddedToken>& added_tokens() const;
  // Raw bytes one id decodes to (may be an incomplete UTF-8 sequence); empty for unknown ids.
  std::string_view token_bytes(int32_t id) const;

  // Debug/test hooks: the pre-tokenizer pieces of already-normalized text (Qwen regex), and the
  // NFC form of text.
  static std::vector<std::string> pre_tokenize(std::string_view text);
  static std::string nfc(std::string_view text);

  // Empties the BPE piece cache (shared by copies); it is bounded (128k pieces) anyway.
  void clear_cache() const;

  bool loaded() const { return impl_ != nullptr; }
  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

// Incremental decoder for generation: feed ids one at a time, get back only complete UTF-8
// characters (never half a character). The concatenation of all put() results and flush()
// equals Tokenizer::decode(all ids, skip_special_tokens).
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tok, bool skip_special_tokens = false)
      : tok_(tok), skip_special_(skip_special_tokens) {}
  // Returns the text that became complete with this id (possibly empty).
  std::string put(int32_t id);
  // End of stream: any dangling incomplete sequence becomes U+FFFD. Resets the state.
  std::string flush();
  void reset() { pending_.clear(); }
  size_t pending_bytes() const { return pending_.size(); }

 private:
  Tokenizer tok_;
  bool skip_special_;
  std::string pending_;
};

namespace utf8 {
// Index of the first byte of the first invalid UTF-8 sequence in s, or npos if s is valid
// (strict: no overlongs, no surrogates, nothing above U+10FFFF).
size_t find_invalid(std::string_view s);
// Appends the lossy decoding of `bytes` to `out` (U+FFFD per maximal invalid subsequence, as
// Rust's String::from_utf8_lossy). If `final` is false, an incomplete but so-far-valid sequence
// at the end is left unconsumed. Returns the number of bytes consumed.
size_t append_lossy(std::string_view bytes, std::string& out, bool final);
}  // namespace utf8

}  // namespace qwen3vl

// Internal to src/tokenizer: code-point classes for the Qwen pre-tokenizer regex, NFC, and the
// pre-tokenizer matcher itself.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qwen3vl::tok {

// Class bits of one code point.
enum : uint8_t {
  kLetter = 1,      // \p{L}: Lu Ll Lt Lm Lo
  kNumber = 2,      // \p{N}: Nd Nl No
  kSpace = 4,       // \s: Unicode White_Space (Oniguruma / Rust regex Unicode \s)
  kCrLf = 8,        // \r or \n
  kNfcUnsafe = 16,  // may change under NFC or interact with a neighbour (slow path)
  kWord = 32,       // \w of the Rust regex crate (Alphabetic, M, Nd, Pc, Join_Control), approx.
  kHfNfcUnknown = 64,  // normalization data HF's NFC tables lack (newer Unicode): left as is
};

uint8_t cp_class(uint32_t cp);

// Decodes one code point of valid UTF-8 at s[i]; advances i.
inline uint32_t next_cp(std::string_view s, size_t& i) {
  const unsigned char b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) { ++i; return b; }
  if (b < 0xE0) {
    uint32_t c = ((b & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
    i += 2;
    return c;
  }
  if (b < 0xF0) {
    uint32_t c = ((b & 0x0Fu) << 12) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 6) |
                 (static_cast<unsigned char>(s[i + 2]) & 0x3Fu);
    i += 3;
    return c;
  }
  uint32_t c = ((b & 0x07u) << 18) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 12) |
               ((static_cast<unsigned char>(s[i + 2]) & 0x3Fu) << 6) | (static_cast<unsigned char>(s[i + 3]) & 0x3Fu);
  i += 4;
  return c;
}

// True if `s` (valid UTF-8) is certainly already in NFC (quick check; false means "maybe not").
bool is_nfc_quick(std::string_view s);
// NFC of valid UTF-8 text (utf8proc).
std::string nfc(std::string_view s);

// Pre-tokenizer pieces of `s` (valid UTF-8) under the Qwen2/Qwen3 Split regex
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//   \s*[\r\n]+|\s+(?!\S)|\s+
// as byte end offsets: piece k is [ends[k-1], ends[k]) (ends[-1] = 0). Every byte is covered.
void pre_tokenize(std::string_view s, std::vector<uint32_t>& ends);

// The regex the matcher implements, as it appears in tokenizer.json.
extern const char* const kQwenSplitRegex;

}  // namespace qwen3vl::tok

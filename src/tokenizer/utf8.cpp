// UTF-8 validation and lossy decoding with Rust String::from_utf8_lossy semantics (one U+FFFD
// per "maximal subpart" of an ill-formed sequence, Unicode 15 section 3.9, table 3-7).
#include "tokenizer/tokenizer.h"

namespace qwen3vl::utf8 {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// Length of the sequence starting with lead byte b (0: never a valid lead), and the allowed
// range of the second byte.
inline int seq_len(unsigned char b, unsigned char& lo, unsigned char& hi) {
  lo = 0x80;
  hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b == 0xE0) { lo = 0xA0; return 3; }
  if (b >= 0xE1 && b <= 0xEC) return 3;
  if (b == 0xED) { hi = 0x9F; return 3; }
  if (b >= 0xEE && b <= 0xEF) return 3;
  if (b == 0xF0) { lo = 0x90; return 4; }
  if (b >= 0xF1 && b <= 0xF3) return 4;
  if (b == 0xF4) { hi = 0x8F; return 4; }
  return 0;
}

enum class Step { kValid, kInvalid, kIncomplete };

// Examines the sequence at s[i]; sets `len` to the bytes it covers (valid char, or the maximal
// invalid subpart, or the incomplete tail).
inline Step step(std::string_view s, size_t i, size_t& len) {
  const unsigned char b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) { len = 1; return Step::kValid; }
  unsigned char lo, hi;
  const int w = seq_len(b, lo, hi);
  if (w == 0) { len = 1; return Step::kInvalid; }
  const size_t n = s.size();
  for (int k = 1; k < w; ++k) {
    if (i + k >= n) { len = n - i; return Step::kIncomplete; }
    const unsigned char c = static_cast<unsigned char>(s[i + k]);
    const bool ok = (k == 1) ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok) { len = k; return Step::kInvalid; }
  }
  len = w;
  return Step::kValid;
}

}  // namespace

size_t find_invalid(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    size_t len;
    if (step(s, i, len) != Step::kValid) return i;
    i += len;
  }
  return std::string_view::npos;
}

size_t append_lossy(std::string_view s, std::string& out, bool final) {
  size_t i = 0;
  const size_t n = s.size();
  size_t run = 0;  // start of the current run of valid bytes
  while (i < n) {
    size_t len;
    Step st = step(s, i, len);
    if (st == Step::kValid) { i += len; continue; }
    out.append(s.data() + run, i - run);
    if (st == Step::kIncomplete && !final) return i;
    out.append(kReplacement, 3);
    i += len;
    run = i;
  }
  out.append(s.data() + run, n - run);
  return n;
}

}  // namespace qwen3vl::utf8

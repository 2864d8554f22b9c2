// Code-point classes (utf8proc), NFC, and the hand-written matcher for Qwen's pre-tokenizer
// regex. The semantics follow the Oniguruma engine that HF `tokenizers` uses for Split regexes:
//   - \s is Unicode White_Space (includes U+0085 and U+00A0; excludes U+001C..U+001F, U+180E,
//     U+200B and U+FEFF);
//   - (?i:...) folds ASCII only: "'S" is a contraction, "'ſ" (U+017F) is not (checked against
//     HF: tokenizer-cases "it'ſ" -> it | ' | ſ);
//   - alternation is leftmost-first with backtracking, which gives these closed forms:
//       \s*[\r\n]+  = the whitespace run up to and including its last \r or \n;
//       \s+(?!\S)   = the whole run if it ends the text, else the run minus its last char
//                     (needs length >= 2);
//       \s+         = the whole run.
#include <utf8proc.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace qwen3vl::tok {

const char* const kQwenSplitRegex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

namespace {

bool is_white_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

bool nfc_unsafe(uint32_t cp) {
  if (cp < 0x300) return false;
  if ((cp >= 0x1161 && cp <= 0x1175) || (cp >= 0x11A8 && cp <= 0x11C2)) return true;  // Hangul V/T jamo
  if (cp >= 0xAC00 && cp <= 0xD7A3) return false;                                      // Hangul syllables
  const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
  if (p->combining_class != 0) return true;
  if (p->comb_index != UINT16_MAX && p->comb_index >= 0x8000) return true;  // composes with the previous char
  if (p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0) {
    // Canonical decomposition: safe only if NFC maps the character to itself.
    utf8proc_uint8_t buf[4];
    utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
    utf8proc_uint8_t* dst = nullptr;
    utf8proc_ssize_t m = utf8proc_map(buf, n, &dst, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    bool same = m == n && dst && std::memcmp(dst, buf, static_cast<size_t>(n)) == 0;
    std::free(dst);
    return !same;
  }
  return false;
}

// Code points that have canonical-normalization data in utf8proc (Unicode 15) but not in the
// NFC tables of HF tokenizers (crate unicode-normalization-alignments, an older Unicode): HF
// treats them as plain starters (ccc 0, no decomposition, no composition), so they never move
// or compose there. Found by testing every utf8proc code point with ccc != 0 or a canonical
// decomposition against tokenizers 0.22.2 NFC ("\u4e00" + X + "\u0334" reordered? NFD(X) != X?),
// plus U+11930, the second element of the only affected composition (U+11935 U+11930 -> U+11938).
constexpr uint32_t kHfUnknownRanges[][2] = {
    {0x7FD, 0x7FD},     {0x898, 0x89F},     {0x8CA, 0x8D3},     {0x9FE, 0x9FE},     {0xC3C, 0xC3C},
    {0xD3B, 0xD3C},     {0xEBA, 0xEBA},     {0x1715, 0x1715},   {0x1ABF, 0x1ACE},   {0x1DF6, 0x1DFA},
    {0xA82C, 0xA82C},   {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50},
    {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B}, {0x1145E, 0x1145E}, {0x11839, 0x1183A},
    {0x11930, 0x11930}, {0x11938, 0x11938}, {0x1193D, 0x1193E}, {0x11943, 0x11943}, {0x119E0, 0x119E0},
    {0x11A34, 0x11A34}, {0x11A47, 0x11A47}, {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45},
    {0x11D97, 0x11D97}, {0x11F41, 0x11F42}, {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136},
    {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
};

bool hf_nfc_unknown(uint32_t cp) {
  for (const auto& r : kHfUnknownRanges)
    if (cp >= r[0] && cp <= r[1]) return true;
  return false;
}

uint8_t compute_class(uint32_t cp) {
  uint8_t c = 0;
  if (cp > 0x10FFFF) return 0;
  const utf8proc_category_t cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  switch (cat) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
      c |= kLetter | kWord;
      break;
    case UTF8PROC_CATEGORY_ND:
      c |= kNumber | kWord;
      break;
    case UTF8PROC_CATEGORY_NL:
      c |= kNumber | kWord;  // Nl is Alphabetic
      break;
    case UTF8PROC_CATEGORY_NO:
      c |= kNumber;
      break;
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_PC:
      c |= kWord;
      break;
    default:
      break;
  }
  if (cp == 0x200C || cp == 0x200D || (cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) ||
      (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189))
    c |= kWord;  // Join_Control and Other_Alphabetic symbols
  if (is_white_space(cp)) c |= kSpace;
  if (cp == '\r' || cp == '\n') c |= kCrLf;
  if (nfc_unsafe(cp)) c |= kNfcUnsafe;
  if (cp >= 0x7FD && hf_nfc_unknown(cp)) c |= kHfNfcUnknown | kNfcUnsafe;
  return c;
}

const std::array<uint8_t, 0x10000>& bmp_table() {
  static const std::unique_ptr<std::array<uint8_t, 0x10000>> t = [] {
    auto a = std::make_unique<std::array<uint8_t, 0x10000>>();
    for (uint32_t cp = 0; cp < 0x10000; ++cp) (*a)[cp] = (cp >= 0xD800 && cp < 0xE000) ? 0 : compute_class(cp);
    return a;
  }();
  return *t;
}

}  // namespace

uint8_t cp_class(uint32_t cp) {
  if (cp < 0x10000) return bmp_table()[cp];
  return compute_class(cp);
}

bool is_nfc_quick(std::string_view s) {
  const auto& t = bmp_table();
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    if (b < 0xCC) {  // < U+0300 (lead bytes up to 0xCB encode U+02C0..U+02FF)
      i += (b < 0x80) ? 1 : 2;
      continue;
    }
    uint32_t cp = next_cp(s, i);
    uint8_t c = cp < 0x10000 ? t[cp] : compute_class(cp);
    if (c & kNfcUnsafe) return false;
  }
  return true;
}

namespace {
std::string nfc_utf8proc(std::string_view s) {
  if (s.empty()) return std::string();
  utf8proc_uint8_t* dst = nullptr;
  utf8proc_ssize_t m = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                    static_cast<utf8proc_ssize_t>(s.size()), &dst,
                                    static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (m < 0) {
    std::free(dst);
    throw Error(std::string("NFC normalization failed: ") + utf8proc_errmsg(m));
  }
  std::string out(reinterpret_cast<const char*>(dst), static_cast<size_t>(m));
  std::free(dst);
  return out;
}
}  // namespace

std::string nfc(std::string_view s) {
  // Characters HF's NFC does not know are starters that nothing crosses, so HF's NFC of
  // "A U B" is NFC(A) U NFC(B): normalize the parts between them separately.
  std::string out;
  size_t part = 0;
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    const uint32_t cp = next_cp(s, i);
    if (cp >= 0x7FD && (cp_class(cp) & kHfNfcUnknown)) {
      out += nfc_utf8proc(s.substr(part, at - part));
      out.append(s.substr(at, i - at));
      part = i;
    }
  }
  if (part == 0) return nfc_utf8proc(s);
  out += nfc_utf8proc(s.substr(part));
  return out;
}

void pre_tokenize(std::string_view s, std::vector<uint32_t>& ends) {
  ends.clear();
  // Decode into code points, classes and byte offsets (scratch reused per thread).
  thread_local std::vector<uint32_t> cps;
  thread_local std::vector<uint8_t> cls;
  thread_local std::vector<uint32_t> off;
  cps.clear();
  cls.clear();
  off.clear();
  const auto& table = bmp_table();
  for (size_t i = 0; i < s.size();) {
    off.push_back(static_cast<uint32_t>(i));
    uint32_t cp = next_cp(s, i);
    cps.push_back(cp);
    cls.push_back(cp < 0x10000 ? table[cp] : compute_class(cp));
  }
  const size_t n = cps.size();
  off.push_back(static_cast<uint32_t>(s.size()));

  auto lower = [](uint32_t c) -> uint32_t { return (c >= 'A' && c <= 'Z') ? c + 32 : c; };
  auto other = [](uint8_t c) { return (c & (kLetter | kNumber | kSpace)) == 0; };

  size_t i = 0;
  while (i < n) {
    const uint8_t c = cls[i];
    size_t j = 0;  // end of the match (exclusive), 0 = not found yet
    // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if (cps[i] == '\'' && i + 1 < n) {
      const uint32_t a = lower(cps[i + 1]);
      if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        j = i + 2;
      } else if (i + 2 < n) {
        const uint32_t b = lower(cps[i + 2]);
        if (((a == 'r' || a == 'v') && b == 'e') || (a == 'l' && b == 'l')) j = i + 3;
      }
    }
    if (j == 0) {
      if (c & kLetter) {
        // 2. \p{L}+ (the optional prefix class excludes letters)
        j = i + 1;
        while (j < n && (cls[j] & kLetter)) ++j;
      } else if (!(c & (kCrLf | kNumber)) && i + 1 < n && (cls[i + 1] & kLetter)) {
        // 2. [^\r\n\p{L}\p{N}]\p{L}+
        j = i + 2;
        while (j < n && (cls[j] & kLetter)) ++j;
      } else if (c & kNumber) {
        // 3. \p{N}
        j = i + 1;
      } else {
        // 4.  ?[^\s\p{L}\p{N}]+[\r\n]*
        size_t k = i;
        if (cps[k] == ' ' && k + 1 < n && other(cls[k + 1])) ++k;
        if (other(cls[k])) {
          ++k;
          while (k < n && other(cls[k])) ++k;
          while (k < n && (cls[k] & kCrLf)) ++k;
          j = k;
        } else {
          // c is whitespace here. 5/6/7 on the maximal whitespace run [i, e).
          size_t e = i;
          size_t last_nl = SIZE_MAX;
          while (e < n && (cls[e] & kSpace)) {
            if (cls[e] & kCrLf) last_nl = e;
            ++e;
          }
          if (last_nl != SIZE_MAX) j = last_nl + 1;  // \s*[\r\n]+
          else if (e == n) j = n;                   // \s+(?!\S) at the end
          else if (e - i >= 2) j = e - 1;           // \s+(?!\S) leaves one space for the next word
          else j = e;                               // \s+
        }
      }
    }
    ends.push_back(off[j]);
    i = j;
  }
}

}  // namespace qwen3vl::tok

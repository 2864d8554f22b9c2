#include "core/hash.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "core/error.h"

namespace qwen3vl {

uint64_t fnv1a64(const void* data, size_t n, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = seed;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= kFnv1a64Prime;
  }
  return h;
}

uint64_t fnv1a64_file(const std::filesystem::path& path, uint64_t seed) {
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) throw Error("cannot open '" + path.string() + "' for hashing: " + std::strerror(errno));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(fp, &std::fclose);
  constexpr size_t kChunk = size_t{1} << 20;
  std::unique_ptr<unsigned char[]> buf(new unsigned char[kChunk]);
  uint64_t h = seed;
  for (;;) {
    size_t n = std::fread(buf.get(), 1, kChunk, fp);
    h = fnv1a64(buf.get(), n, h);
    if (n < kChunk) {
      if (std::ferror(fp)) throw Error("read error while hashing '" + path.string() + "': " + std::strerror(errno));
      break;
    }
  }
  return h;
}

}  // namespace qwen3vl

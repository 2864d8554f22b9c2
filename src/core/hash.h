// FNV-1a 64-bit hashing of files (checkpoint fingerprints for fixtures).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace qwen3vl {

constexpr uint64_t kFnv1a64Offset = 14695981039346656037ull;
constexpr uint64_t kFnv1a64Prime = 1099511628211ull;

// FNV-1a 64 over `n` bytes, continuing from `seed` (pass the previous result to chain).
uint64_t fnv1a64(const void* data, size_t n, uint64_t seed = kFnv1a64Offset);

// FNV-1a 64 over the bytes of a file, read in chunks. Chaining: hashing file A then passing the
// result as seed for file B equals hashing the concatenation A+B. Throws Error naming the file.
uint64_t fnv1a64_file(const std::filesystem::path& path, uint64_t seed = kFnv1a64Offset);

}  // namespace qwen3vl

// qwen3vl: command-line front end. Thin: every subcommand lives in its own cmd_*.cpp and calls
// the library.
#include <malloc.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "cli/command.h"
#include "core/error.h"

namespace qwen3vl::cli {

std::map<std::string, CommandInfo>& command_registry() {
  static std::map<std::string, CommandInfo> r;
  return r;
}

Args::Args(int argc, char** argv, std::vector<std::string> bool_flags) : bool_flags_(std::move(bool_flags)) {
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.size() > 1 && a[0] == '-' && !(a.size() > 1 && (std::isdigit(static_cast<unsigned char>(a[1])) || a[1] == '.'))) {
      if (a == "--") {
        for (++i; i < argc; ++i) positional_.push_back(argv[i]);
        break;
      }
      auto eq = a.find('=');
      if (eq != std::string::npos && a.rfind("--", 0) == 0) {
        kv_.emplace_back(a.substr(0, eq), a.substr(eq + 1));
        continue;
      }
      if (std::find(bool_flags_.begin(), bool_flags_.end(), a) != bool_flags_.end()) {
        kv_.emplace_back(a, "1");
        continue;
      }
      QWEN3VL_CHECK(i + 1 < argc, "flag " + a + " needs a value");
      kv_.emplace_back(a, argv[++i]);
    } else {
      positional_.push_back(a);
    }
  }
}

std::optional<std::string> Args::get(std::initializer_list<const char*> names) const {
  std::optional<std::string> out;
  for (const char* n : names) {
    asked_.push_back(n);
    for (auto& [k, v] : kv_)
      if (k == n) out = v;
    if (out) return out;
  }
  return out;
}

std::string Args::get_or(std::initializer_list<const char*> names, const std::string& def) const {
  auto v = get(names);
  return v ? *v : def;
}

std::vector<std::string> Args::get_all(std::initializer_list<const char*> names) const {
  std::vector<std::string> out;
  for (const char* n : names) asked_.push_back(n);
  for (auto& [k, v] : kv_)
    for (const char* n : names)
      if (k == n) out.push_back(v);
  return out;
}

bool Args::flag(std::initializer_list<const char*> names) const {
  auto v = get(names);
  return v && *v != "0" && *v != "false";
}

long long Args::get_int(std::initializer_list<const char*> names, long long def) const {
  auto v = get(names);
  if (!v) return def;
  char* end = nullptr;
  long long x = std::strtoll(v->c_str(), &end, 10);
  QWEN3VL_CHECK(end && *end == 0 && !v->empty(), "flag " + std::string(*names.begin()) + ": not an integer: '" + *v + "'");
  return x;
}

double Args::get_double(std::initializer_list<const char*> names, double def) const {
  auto v = get(names);
  if (!v) return def;
  char* end = nullptr;
  double x = std::strtod(v->c_str(), &end);
  QWEN3VL_CHECK(end && *end == 0 && !v->empty(), "flag " + std::string(*names.begin()) + ": not a number: '" + *v + "'");
  return x;
}

void Args::reject_unknown() const {
  std::string bad;
  for (auto& [k, v] : kv_)
    if (std::find(asked_.begin(), asked_.end(), k) == asked_.end()) bad += (bad.empty() ? "" : ", ") + k;
  QWEN3VL_CHECK(bad.empty(), "unknown option(s): " + bad);
}

}  // namespace qwen3vl::cli

static void usage(FILE* f) {
  std::fprintf(f, "usage: qwen3vl <command> [options]\n\ncommands:\n");
  for (auto& [name, info] : qwen3vl::cli::command_registry())
    std::fprintf(f, "  %-12s %s\n", name.c_str(), info.summary.c_str());
  std::fprintf(f, "\nqwen3vl <command> --help shows a command's options.\n");
}

int main(int argc, char** argv) {
  using namespace qwen3vl::cli;
  // Activations of a vision forward are 16-64 MiB each (4096 patches x 1024..4096 floats). Above
  // glibc's mmap threshold (at most 32 MiB) every such buffer is a fresh mapping, faulted in and
  // zeroed page by page and unmapped again on free: 1.3 million minor faults and 6-9% of a 1024²
  // encode on the 2-core VM (vision-bench --grid 64x64: 22.2 -> 20.9 s and 19.1 -> 17.4 s in
  // alternating runs). Serving them from the heap, and not trimming it, lets the next op reuse the
  // pages (81 thousand faults). Costs: the process keeps up to its peak heap after a request (vision
  // peak RSS +82 MiB from reuse fragmentation; text peak RSS unchanged, bf16 and q4). The library
  // itself leaves the allocator alone; this is the front ends' policy.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  auto& reg = command_registry();
  auto it = reg.find(argv[1]);
  if (it == reg.end()) {
    std::fprintf(stderr, "qwen3vl: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
  }
  try {
    Args args(argc - 2, argv + 2, it->second.bool_flags);
    return it->second.fn(args);
  } catch (const qwen3vl::Error& e) {
    std::fprintf(stderr, "qwen3vl %s: error: %s\n", argv[1], e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qwen3vl %s: internal error: %s\n", argv[1], e.what());
    return 3;
  }
}

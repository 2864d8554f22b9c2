// Subcommand registry for the `qwen3vl` program. Each cmd_*.cpp file registers one command:
//   static int cmd_inspect(Args& a);
//   QWEN3VL_COMMAND("inspect", "print config, weight table and parameter counts", cmd_inspect);
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qwen3vl::cli {

// Minimal, predictable flag parser: "--name value", "--name=value", "-x value", bare "--flag"
// (declared as boolean by the command), and positionals. Unknown flags are an error.
class Args {
 public:
  Args(int argc, char** argv, std::vector<std::string> bool_flags = {});
  // Value of a flag (last one wins) or std::nullopt; aliases are tried in order.
  std::optional<std::string> get(std::initializer_list<const char*> names) const;
  std::string get_or(std::initializer_list<const char*> names, const std::string& def) const;
  std::vector<std::string> get_all(std::initializer_list<const char*> names) const;
  bool flag(std::initializer_list<const char*> names) const;
  long long get_int(std::initializer_list<const char*> names, long long def) const;
  double get_double(std::initializer_list<const char*> names, double def) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // Throws Error listing flags that no get/get_all/flag call asked for.
  void reject_unknown() const;

 private:
  std::vector<std::pair<std::string, std::string>> kv_;
  std::vector<std::string> bool_flags_;
  std::vector<std::string> positional_;
  mutable std::vector<std::string> asked_;
};

using CommandFn = int (*)(Args&);
struct CommandInfo {
  std::string summary;
  CommandFn fn;
  std::vector<std::string> bool_flags;
};
std::map<std::string, CommandInfo>& command_registry();

struct CommandRegistrar {
  CommandRegistrar(const char* name, const char* summary, CommandFn fn, std::vector<std::string> bool_flags = {}) {
    command_registry()[name] = CommandInfo{summary, fn, std::move(bool_flags)};
  }
};

#define QWEN3VL_CAT2(a, b) a##b
#define QWEN3VL_CAT(a, b) QWEN3VL_CAT2(a, b)
// QWEN3VL_COMMAND(name, summary, fn [, {"--bool-flag", ...}])
#define QWEN3VL_COMMAND(...) \
  static ::qwen3vl::cli::CommandRegistrar QWEN3VL_CAT(qwen3vl_cmd_, __LINE__)(__VA_ARGS__)

}  // namespace qwen3vl::cli

// Error handling for the whole engine.
//
// Every failure a user can cause (bad file, bad config, bad request) is reported by throwing
// qwen3vl::Error with a message that names the file / tensor / field involved. Front ends catch
// it and print it; nothing in the library calls abort() or exit() on bad input.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace qwen3vl {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// QWEN3VL_CHECK(cond, msg-expression): throws Error(msg) when cond is false. For conditions
// caused by inputs. Internal invariants use assert().
#define QWEN3VL_CHECK(cond, msg)                  \
  do {                                            \
    if (!(cond)) throw ::qwen3vl::Error((msg));   \
  } while (0)

}  // namespace qwen3vl

// Building chat messages from command-line style inputs (shared by the CLI front ends).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qwen3vl {

// One user turn: every image, then the video (if any), then the text — the layout HF examples use.
// Adds a system turn first when `system` is non-empty.
nlohmann::ordered_json make_user_messages(const std::string& text, const std::vector<std::string>& images,
                                          const std::vector<std::string>& videos, const std::string& system = "");

// Reads a messages file: a JSON array of messages, or an object with a "messages" array.
nlohmann::ordered_json load_messages_file(const std::string& path);

}  // namespace qwen3vl

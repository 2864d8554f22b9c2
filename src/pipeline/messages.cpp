#include "pipeline/messages.h"

#include <fstream>

#include "core/error.h"

namespace qwen3vl {

nlohmann::ordered_json make_user_messages(const std::string& text, const std::vector<std::string>& images,
                                          const std::vector<std::string>& videos, const std::string& system) {
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  if (!system.empty()) msgs.push_back({{"role", "system"}, {"content", system}});
  nlohmann::ordered_json content = nlohmann::ordered_json::array();
  for (const auto& im : images) content.push_back({{"type", "image"}, {"image", im}});
  for (const auto& v : videos) content.push_back({{"type", "video"}, {"video", v}});
  content.push_back({{"type", "text"}, {"text", text}});
  msgs.push_back({{"role", "user"}, {"content", content}});
  return msgs;
}

nlohmann::ordered_json load_messages_file(const std::string& path) {
  std::ifstream f(path);
  QWEN3VL_CHECK(f.good(), "cannot read messages file " + path);
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(f, nullptr, false);
  QWEN3VL_CHECK(!j.is_discarded(), path + ": not valid JSON");
  if (j.is_object() && j.contains("messages")) j = j["messages"];
  QWEN3VL_CHECK(j.is_array(), path + ": expected a JSON array of messages (or {\"messages\": [...]})");
  return j;
}

}  // namespace qwen3vl

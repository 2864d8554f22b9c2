#include "chat/chat_template.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "chat/templates.h"
#include "core/error.h"

namespace qwen3vl::chat {

namespace {

std::string strip_ws(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s)
    if (!(c == ' ' || c == '\n' || c == '\t' || c == '\r')) o += c;
  return o;
}

// Jinja truthiness of a JSON value (missing == null == false).
bool truthy(const ordered_json* v) {
  if (!v || v->is_null()) return false;
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_string()) return !v->get_ref<const std::string&>().empty();
  if (v->is_array() || v->is_object()) return !v->empty();
  if (v->is_number_integer()) return v->get<int64_t>() != 0;
  if (v->is_number()) return v->get<double>() != 0.0;
  return true;
}

const ordered_json* field(const ordered_json& o, const char* key) {
  if (!o.is_object()) return nullptr;
  auto it = o.find(key);
  return it == o.end() ? nullptr : &*it;
}

bool has_key(const ordered_json& o, const char* key) { return o.is_object() && o.contains(key); }

bool type_is(const ordered_json& part, const char* t) {
  const ordered_json* ty = field(part, "type");
  return ty && ty->is_string() && ty->get_ref<const std::string&>() == t;
}

std::string text_of(const ordered_json& part) {
  const ordered_json* t = field(part, "text");
  if (!t || t->is_null()) return "";
  if (t->is_string()) return t->get<std::string>();
  return python_json_dumps(*t);  // Jinja would print the Python repr; JSON is the closest honest choice
}

std::string role_of(const ordered_json& m) {
  const ordered_json* r = field(m, "role");
  QWEN3VL_CHECK(r && r->is_string(), "chat message without a string \"role\": " + m.dump());
  return r->get<std::string>();
}

struct Counters {
  int image = 0, video = 0;
};

enum class PartKind { Image, Video, Text, Other };

// Instruct template's test order: type == image or 'image' in c or 'image_url' in c; then video.
PartKind classify_instruct(const ordered_json& c) {
  if (type_is(c, "image") || has_key(c, "image") || has_key(c, "image_url")) return PartKind::Image;
  if (type_is(c, "video") || has_key(c, "video")) return PartKind::Video;
  if (has_key(c, "text")) return PartKind::Text;
  return PartKind::Other;
}
// Thinking template's render_content: 'image' in item or 'image_url' in item or type == image.
PartKind classify_thinking(const ordered_json& c) { return classify_instruct(c); }

std::string vision_item(PartKind k, Counters& n, bool count, bool add_vision_id) {
  if (k == PartKind::Image) {
    if (count) ++n.image;
    return (add_vision_id ? "Picture " + std::to_string(n.image) + ": " : "") +
           "<|vision_start|><|image_pad|><|vision_end|>";
  }
  if (count) ++n.video;
  return (add_vision_id ? "Video " + std::to_string(n.video) + ": " : "") +
         "<|vision_start|><|video_pad|><|vision_end|>";
}

// User / tool content in the Instruct template (images and videos counted).
std::string render_parts(const ordered_json& content, Counters& n, bool count, bool add_vision_id) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return "";
  QWEN3VL_CHECK(content.is_array(), "chat message content must be a string or a list of parts");
  std::string out;
  for (const auto& c : content) {
    PartKind k = classify_instruct(c);
    if (k == PartKind::Image || k == PartKind::Video)
      out += vision_item(k, n, count, add_vision_id);
    else if (k == PartKind::Text)
      out += text_of(c);
  }
  return out;
}

// Text parts only (system message, Instruct assistant content).
std::string render_text_only(const ordered_json& content) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return "";
  QWEN3VL_CHECK(content.is_array(), "chat message content must be a string or a list of parts");
  std::string out;
  for (const auto& c : content)
    if (has_key(c, "text")) out += text_of(c);
  return out;
}

const ordered_json& content_of(const ordered_json& m) {
  static const ordered_json null_json = nullptr;
  const ordered_json* c = field(m, "content");
  return c ? *c : null_json;
}

std::string tools_block(const ordered_json& tools) {
  std::string s =
      "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with "
      "function signatures within <tools></tools> XML tags:\n<tools>";
  for (const auto& t : tools) s += "\n" + python_json_dumps(t);
  s += "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
       "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
       "<args-json-object>}\n</tool_call><|im_end|>\n";
  return s;
}

std::string render_tool_calls(const ordered_json& m, bool content_truthy) {
  const ordered_json* calls = field(m, "tool_calls");
  if (!truthy(calls)) return "";
  QWEN3VL_CHECK(calls->is_array(), "\"tool_calls\" must be a list");
  std::string out;
  bool first = true;
  for (const auto& call0 : *calls) {
    if ((first && content_truthy) || !first) out += "\n";
    first = false;
    const ordered_json* fn = field(call0, "function");
    const ordered_json& call = truthy(fn) ? *fn : call0;
    const ordered_json* name = field(call, "name");
    const ordered_json* args = field(call, "arguments");
    out += "<tool_call>\n{\"name\": \"";
    out += name && name->is_string() ? name->get<std::string>() : (name ? python_json_dumps(*name) : "");
    out += "\", \"arguments\": ";
    if (args && args->is_string())
      out += args->get<std::string>();
    else
      out += args ? python_json_dumps(*args) : "";
    out += "}\n</tool_call>";
  }
  return out;
}

bool is_tool(const ordered_json& messages, size_t i) { return role_of(messages[i]) == "tool"; }

std::string render_instruct(const ordered_json& messages, const ChatTemplateOptions& o) {
  std::string out;
  const bool tools = truthy(&o.tools);
  const bool first_system = !messages.empty() && role_of(messages[0]) == "system";
  if (tools) {
    out += "<|im_start|>system\n";
    if (first_system) out += render_text_only(content_of(messages[0])) + "\n\n";
    out += tools_block(o.tools);
  } else if (first_system) {
    out += "<|im_start|>system\n" + render_text_only(content_of(messages[0])) + "<|im_end|>\n";
  }
  Counters n;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ordered_json& m = messages[i];
    const std::string role = role_of(m);
    const ordered_json& content = content_of(m);
    if (role == "user") {
      out += "<|im_start|>user\n" + render_parts(content, n, true, o.add_vision_id) + "<|im_end|>\n";
    } else if (role == "assistant") {
      out += "<|im_start|>assistant\n" + render_text_only(content);
      out += render_tool_calls(m, truthy(&content));
      out += "<|im_end|>\n";
    } else if (role == "tool") {
      if (i == 0 || !is_tool(messages, i - 1)) out += "<|im_start|>user";
      out += "\n<tool_response>\n" + render_parts(content, n, true, o.add_vision_id) + "\n</tool_response>";
      if (i + 1 == messages.size() || !is_tool(messages, i + 1)) out += "<|im_end|>\n";
    }
    // Other roles (a system message after the first) are not rendered by this template.
  }
  if (o.add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// Python str.strip / lstrip / rstrip with a character set of just '\n'.
std::string lstrip_nl(const std::string& s) {
  size_t b = s.find_first_not_of('\n');
  return b == std::string::npos ? "" : s.substr(b);
}
std::string rstrip_nl(const std::string& s) {
  size_t e = s.find_last_not_of('\n');
  return e == std::string::npos ? "" : s.substr(0, e + 1);
}
bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
// Python s.split(sep)[0] and [-1].
std::string split_first(const std::string& s, const std::string& sep) {
  size_t p = s.find(sep);
  return p == std::string::npos ? s : s.substr(0, p);
}
std::string split_last(const std::string& s, const std::string& sep) {
  size_t p = s.rfind(sep);
  return p == std::string::npos ? s : s.substr(p + sep.size());
}

std::string render_thinking(const ordered_json& messages, const ChatTemplateOptions& o) {
  std::string out;
  Counters n;
  auto render_content = [&](const ordered_json& content, bool count) {
    if (content.is_string()) return content.get<std::string>();
    if (content.is_null()) return std::string();
    QWEN3VL_CHECK(content.is_array(), "chat message content must be a string or a list of parts");
    std::string s;
    for (const auto& c : content) {
      PartKind k = classify_thinking(c);
      if (k == PartKind::Image || k == PartKind::Video)
        s += vision_item(k, n, count, o.add_vision_id);
      else if (k == PartKind::Text)
        s += text_of(c);
    }
    return s;
  };
  const bool tools = truthy(&o.tools);
  const bool first_system = !messages.empty() && role_of(messages[0]) == "system";
  if (tools) {
    out += "<|im_start|>system\n";
    if (first_system) out += render_content(content_of(messages[0]), false) + "\n\n";
    out += tools_block(o.tools);
  } else if (first_system) {
    out += "<|im_start|>system\n" + render_content(content_of(messages[0]), false) + "<|im_end|>\n";
  }
  // Index of the last real user query (not a pure tool response).
  int64_t last_query_index = static_cast<int64_t>(messages.size()) - 1;
  for (int64_t i = static_cast<int64_t>(messages.size()) - 1; i >= 0; --i) {
    const ordered_json& m = messages[static_cast<size_t>(i)];
    if (role_of(m) == "user") {
      std::string c = render_content(content_of(m), false);
      if (!(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) {
        last_query_index = i;
        break;
      }
    }
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const ordered_json& m = messages[i];
    const std::string role = role_of(m);
    std::string content = render_content(content_of(m), true);
    const bool last = i + 1 == messages.size();
    if (role == "user" || (role == "system" && i != 0)) {
      out += "<|im_start|>" + role + "\n" + content + "<|im_end|>\n";
    } else if (role == "assistant") {
      std::string reasoning;
      const ordered_json* rc = field(m, "reasoning_content");
      if (rc && rc->is_string()) {
        reasoning = rc->get<std::string>();
      } else if (content.find("</think>") != std::string::npos) {
        reasoning = lstrip_nl(split_last(rstrip_nl(split_first(content, "</think>")), "<think>"));
        content = lstrip_nl(split_last(content, "</think>"));
      }
      if (static_cast<int64_t>(i) > last_query_index && (last || !reasoning.empty())) {
        out += "<|im_start|>assistant\n<think>\n" + rstrip_nl(lstrip_nl(reasoning)) + "\n</think>\n\n" +
               lstrip_nl(content);
      } else {
        out += "<|im_start|>assistant\n" + content;
      }
      out += render_tool_calls(m, !content.empty());
      out += "<|im_end|>\n";
    } else if (role == "tool") {
      if (i == 0 || !is_tool(messages, i - 1)) out += "<|im_start|>user";
      out += "\n<tool_response>\n" + content + "\n</tool_response>";
      if (last || !is_tool(messages, i + 1)) out += "<|im_end|>\n";
    }
  }
  if (o.add_generation_prompt) out += "<|im_start|>assistant\n<think>\n";
  return out;
}

void append_py_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

// Python float repr: shortest round-trip digits; exponent form when exp < -4 or exp >= 16.
std::string py_float_repr(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // d.ddde±XX
  size_t epos = sci.find('e');
  std::string mant = sci.substr(0, epos);
  int exp = std::stoi(sci.substr(epos + 1));
  bool neg = mant[0] == '-';
  if (neg) mant = mant.substr(1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out = neg ? "-" : "";
  if (exp < -4 || exp >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  } else if (exp >= 0) {
    if (static_cast<int>(digits.size()) <= exp + 1) {
      out += digits + std::string(static_cast<size_t>(exp + 1) - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(exp + 1)) + "." + digits.substr(static_cast<size_t>(exp + 1));
    }
  } else {
    out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
  }
  return out;
}

void dumps(std::string& out, const ordered_json& j) {
  switch (j.type()) {
    case ordered_json::value_t::null: out += "null"; break;
    case ordered_json::value_t::boolean: out += j.get<bool>() ? "true" : "false"; break;
    case ordered_json::value_t::number_integer: out += std::to_string(j.get<int64_t>()); break;
    case ordered_json::value_t::number_unsigned: out += std::to_string(j.get<uint64_t>()); break;
    case ordered_json::value_t::number_float: out += py_float_repr(j.get<double>()); break;
    case ordered_json::value_t::string: append_py_string(out, j.get_ref<const std::string&>()); break;
    case ordered_json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& e : j) {
        if (!first) out += ", ";
        first = false;
        dumps(out, e);
      }
      out += ']';
      break;
    }
    case ordered_json::value_t::object: {
      out += '{';
      bool first = true;
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!first) out += ", ";
        first = false;
        append_py_string(out, it.key());
        out += ": ";
        dumps(out, it.value());
      }
      out += '}';
      break;
    }
    default: out += "null";
  }
}

}  // namespace

TemplateKind identify_template(const std::string& jinja_text) {
  const std::string t = strip_ws(jinja_text);
  if (t == strip_ws(kQwen3VLInstructTemplate)) return TemplateKind::Instruct;
  if (t == strip_ws(kQwen3VLThinkingTemplate)) return TemplateKind::Thinking;
  return TemplateKind::Unknown;
}

const char* template_kind_name(TemplateKind k) {
  switch (k) {
    case TemplateKind::Instruct: return "Qwen3-VL Instruct";
    case TemplateKind::Thinking: return "Qwen3-VL Thinking";
    case TemplateKind::Unknown: return "unknown";
  }
  return "?";
}

bool is_image_part(const ordered_json& part) { return classify_instruct(part) == PartKind::Image; }
bool is_video_part(const ordered_json& part) { return classify_instruct(part) == PartKind::Video; }

std::vector<const ordered_json*> rendered_media_parts(const ordered_json& messages, TemplateKind kind) {
  QWEN3VL_CHECK(messages.is_array(), "chat messages must be a JSON array");
  std::vector<const ordered_json*> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ordered_json& m = messages[i];
    const std::string role = role_of(m);
    bool rendered;
    if (kind == TemplateKind::Thinking)
      rendered = role == "user" || role == "system" || role == "assistant" || role == "tool";
    else
      rendered = role == "user" || role == "tool";
    const ordered_json& content = content_of(m);
    if (!rendered || !content.is_array()) continue;
    for (const auto& c : content) {
      PartKind k = classify_instruct(c);
      if (k == PartKind::Image || k == PartKind::Video) out.push_back(&c);
    }
  }
  return out;
}

std::string python_json_dumps(const ordered_json& j) {
  std::string out;
  dumps(out, j);
  return out;
}

std::string render_chat(const ordered_json& messages, TemplateKind kind, const ChatTemplateOptions& opts) {
  QWEN3VL_CHECK(messages.is_array(), "chat messages must be a JSON array");
  for (const auto& m : messages) QWEN3VL_CHECK(m.is_object(), "each chat message must be a JSON object");
  return kind == TemplateKind::Thinking ? render_thinking(messages, opts) : render_instruct(messages, opts);
}

std::string expand_image_pads(const std::string& text, const std::vector<int64_t>& tokens_per_image) {
  static const std::string pad = "<|image_pad|>";
  std::string out;
  size_t pos = 0, k = 0;
  for (;;) {
    size_t p = text.find(pad, pos);
    if (p == std::string::npos) break;
    QWEN3VL_CHECK(k < tokens_per_image.size(), "the prompt has more <|image_pad|> placeholders than images (" +
                                                   std::to_string(tokens_per_image.size()) + ")");
    out.append(text, pos, p - pos);
    for (int64_t i = 0; i < tokens_per_image[k]; ++i) out += pad;
    ++k;
    pos = p + pad.size();
  }
  out.append(text, pos, std::string::npos);
  QWEN3VL_CHECK(k == tokens_per_image.size(), "the prompt has " + std::to_string(k) +
                                                  " <|image_pad|> placeholders but " +
                                                  std::to_string(tokens_per_image.size()) + " images were given");
  return out;
}

std::string format_seconds(double t) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f", t);
  return buf;
}

std::string expand_video_pads(const std::string& text, const std::vector<VideoPlaceholder>& videos) {
  static const std::string full = "<|vision_start|><|video_pad|><|vision_end|>";
  static const std::string pad = "<|video_pad|>";
  std::string cur = text;
  // Build with a placeholder token that cannot occur in user text, then substitute (as HF does).
  static const std::string ph = "\x01QWEN3VL_VIDEO_PLACEHOLDER\x01";
  for (size_t k = 0; k < videos.size(); ++k) {
    std::string rep;
    for (double ts : videos[k].timestamps) {
      rep += "<" + format_seconds(ts) + " seconds><|vision_start|>";
      for (int64_t i = 0; i < videos[k].tokens_per_group; ++i) rep += ph;
      rep += "<|vision_end|>";
    }
    size_t p = cur.find(full);
    size_t len = full.size();
    if (p == std::string::npos) {
      p = cur.find(pad);
      len = pad.size();
    }
    QWEN3VL_CHECK(p != std::string::npos, "the prompt has fewer <|video_pad|> placeholders than videos (" +
                                              std::to_string(videos.size()) + ")");
    cur.replace(p, len, rep);
  }
  QWEN3VL_CHECK(cur.find(pad) == std::string::npos,
                "the prompt has more <|video_pad|> placeholders than videos (" + std::to_string(videos.size()) + ")");
  std::string out;
  size_t pos = 0;
  for (;;) {
    size_t p = cur.find(ph, pos);
    if (p == std::string::npos) break;
    out.append(cur, pos, p - pos);
    out += pad;
    pos = p + ph.size();
  }
  out.append(cur, pos, std::string::npos);
  return out;
}

}  // namespace qwen3vl::chat

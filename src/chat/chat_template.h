// Chat template rendering for Qwen3-VL: OpenAI-style messages -> prompt text, exactly as HF's
// apply_chat_template renders the Qwen3-VL Instruct / Thinking Jinja templates (templates.h),
// implemented natively (the templates' logic in C++, no Jinja engine), plus the processor's
// expansion of each image/video placeholder into the pad tokens its grid needs.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qwen3vl::chat {

using ordered_json = nlohmann::ordered_json;

enum class TemplateKind { Instruct, Thinking, Unknown };

struct ChatTemplateOptions {
  bool add_generation_prompt = true;
  bool add_vision_id = false;
  ordered_json tools = nullptr;  // list of tool schemas, or null
};

// Which known template a checkpoint's chat template text is (compared with all whitespace
// removed). Unknown means: warn the user loudly and render with Instruct.
TemplateKind identify_template(const std::string& jinja_text);
const char* template_kind_name(TemplateKind k);

// Renders `messages` (a JSON array of {"role", "content": string | [parts], "tool_calls"?,
// "reasoning_content"?}) as HF does. Parts are {"type": "text", "text"} / {"type": "image", ...} /
// {"type": "image_url", "image_url": ...} / {"type": "video", ...}. Throws Error on malformed input.
std::string render_chat(const ordered_json& messages, TemplateKind kind, const ChatTemplateOptions& opts = {});

// The image / video parts of `messages` that the template renders, in render order (the order
// the processor must load media in). Instruct renders vision items of user and tool messages only;
// Thinking also those of system and assistant messages.
std::vector<const ordered_json*> rendered_media_parts(const ordered_json& messages, TemplateKind kind);
// Whether a content part is an image (or a video) the way the templates classify it.
bool is_image_part(const ordered_json& part);
bool is_video_part(const ordered_json& part);

// Python's json.dumps(x, ensure_ascii=False) formatting (", " and ": " separators), as the
// templates' `tojson` filter produces it.
std::string python_json_dumps(const ordered_json& j);

// Qwen3VLProcessor's placeholder expansion: the k-th "<|image_pad|>" becomes tokens_per_image[k]
// copies of it. Throws Error when the counts disagree.
std::string expand_image_pads(const std::string& text, const std::vector<int64_t>& tokens_per_image);

struct VideoPlaceholder {
  std::vector<double> timestamps;  // one per temporal group (seconds)
  int64_t tokens_per_group = 0;    // (h * w) / merge^2
};
// Replaces the k-th "<|vision_start|><|video_pad|><|vision_end|>" (or a bare "<|video_pad|>") with
// "<t seconds><|vision_start|>" + pads + "<|vision_end|>" for every temporal group.
std::string expand_video_pads(const std::string& text, const std::vector<VideoPlaceholder>& videos);

// Python's f"{x:.1f}" (correctly rounded, like glibc printf).
std::string format_seconds(double t);

}  // namespace qwen3vl::chat

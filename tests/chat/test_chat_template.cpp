// Chat template rendering vs HF apply_chat_template (fixtures from
// tools/reference/chat_template_fixtures.py) and the processor's placeholder expansion.
#include <gtest/gtest.h>

#include <fstream>

#include "chat/chat_template.h"
#include "chat/templates.h"
#include "common/compare.h"
#include "core/error.h"

using namespace qwen3vl;
using namespace qwen3vl::chat;

namespace {

ordered_json load_cases() {
  std::ifstream f(test::fixtures_dir() / "chat" / "templates.json");
  EXPECT_TRUE(f.good());
  return ordered_json::parse(f);
}

}  // namespace

// Every layout in the fixture (single/multi image, video, text-image-text, multi-turn, system
// first/late, tools with dict and string arguments, tool responses with images, vision ids,
// no generation prompt, Thinking reasoning history, unicode), for both templates.
TEST(ChatTemplate, MatchesHFApplyChatTemplate) {
  ordered_json doc = load_cases();
  ASSERT_GE(doc["cases"].size(), 20u);
  int n = 0;
  for (const auto& c : doc["cases"]) {
    ChatTemplateOptions o;
    o.add_generation_prompt = c["options"]["add_generation_prompt"].get<bool>();
    o.add_vision_id = c["options"]["add_vision_id"].get<bool>();
    o.tools = c["options"]["tools"];
    TemplateKind kind = c["template"] == "thinking" ? TemplateKind::Thinking : TemplateKind::Instruct;
    std::string got = render_chat(c["messages"], kind, o);
    EXPECT_EQ(got, c["expected"].get<std::string>()) << c["template"] << " / " << c["name"];
    ++n;
  }
  std::printf("[chat] %d layouts rendered identically to HF %s\n", n, doc["transformers"].get<std::string>().c_str());
}

TEST(ChatTemplate, IdentifiesKnownTemplatesIgnoringWhitespace) {
  EXPECT_EQ(identify_template(kQwen3VLInstructTemplate), TemplateKind::Instruct);
  EXPECT_EQ(identify_template(kQwen3VLThinkingTemplate), TemplateKind::Thinking);
  std::string reflowed = std::string(kQwen3VLInstructTemplate) + "\n\n  ";
  EXPECT_EQ(identify_template(reflowed), TemplateKind::Instruct);
  EXPECT_EQ(identify_template("{{ messages }}"), TemplateKind::Unknown);
}

TEST(ChatTemplate, RejectsMalformedMessages) {
  EXPECT_THROW(render_chat(ordered_json::object(), TemplateKind::Instruct), Error);
  EXPECT_THROW(render_chat(ordered_json::parse(R"([{"content": "x"}])"), TemplateKind::Instruct), Error);
  EXPECT_THROW(render_chat(ordered_json::parse(R"([{"role": "user", "content": 5}])"), TemplateKind::Instruct), Error);
}

TEST(PythonJson, MatchesJsonDumps) {
  // Values checked against Python's json.dumps(x, ensure_ascii=False).
  EXPECT_EQ(python_json_dumps(ordered_json::parse(R"({"b": [1, 2.5, true, null], "a": "é\n\"q\""})")),
            "{\"b\": [1, 2.5, true, null], \"a\": \"é\\n\\\"q\\\"\"}");
  EXPECT_EQ(python_json_dumps(ordered_json(1e-05)), "1e-05");
  EXPECT_EQ(python_json_dumps(ordered_json(1e16)), "1e+16");
  EXPECT_EQ(python_json_dumps(ordered_json(123456789.0)), "123456789.0");
  EXPECT_EQ(python_json_dumps(ordered_json(0.0001)), "0.0001");
  EXPECT_EQ(python_json_dumps(ordered_json(-2.0)), "-2.0");
  EXPECT_EQ(python_json_dumps(ordered_json("\x01")), "\"\\u0001\"");
}

TEST(Placeholders, ImagePadsExpandPerGrid) {
  std::string t = "a<|image_pad|>b<|image_pad|>c";
  EXPECT_EQ(expand_image_pads(t, {2, 1}), "a<|image_pad|><|image_pad|>b<|image_pad|>c");
  EXPECT_THROW(expand_image_pads(t, {2}), Error);
  EXPECT_THROW(expand_image_pads(t, {1, 1, 1}), Error);
}

TEST(Placeholders, VideoPadsGetTimestamps) {
  std::string t = "x<|vision_start|><|video_pad|><|vision_end|>y";
  VideoPlaceholder v{{0.283, 2.55}, 2};
  EXPECT_EQ(expand_video_pads(t, {v}),
            "x<0.3 seconds><|vision_start|><|video_pad|><|video_pad|><|vision_end|>"
            "<2.5 seconds><|vision_start|><|video_pad|><|video_pad|><|vision_end|>y");
  EXPECT_THROW(expand_video_pads(t, {v, v}), Error);
  EXPECT_THROW(expand_video_pads(t + t, {v}), Error);
}

TEST(Placeholders, SecondsFormatLikePython) {
  // Python: f"{2.55:.1f}" == "2.5" (binary value below 2.55), f"{0.25:.1f}" == "0.2" (ties to even).
  EXPECT_EQ(format_seconds(2.55), "2.5");
  EXPECT_EQ(format_seconds(0.25), "0.2");
  EXPECT_EQ(format_seconds(1.4166666), "1.4");
  EXPECT_EQ(format_seconds(3.6833333), "3.7");
}

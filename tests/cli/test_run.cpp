// `qwen3vl run` streams exactly what the library's Engine::chat returns for the same request.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/files.h"
#include "common/models.h"
#include "pipeline/engine.h"
#include "pipeline/messages.h"

using namespace qwen3vl;

using test::run_capture;

TEST(RunCommand, StreamedOutputEqualsLibraryGreedy) {
  auto dir = test::generated_model("--preset tiny --seed 0 --dtype bf16");
  const std::string image = (test::shared_dir() / "data" / "images" / "astronaut.png").string();
  const std::string prompt = "Describe this image.";

  EngineOptions eo;
  eo.model_dir = dir;
  eo.context_length = 2048;
  auto engine = Engine::load(eo);
  ChatRequest req;
  req.messages = make_user_messages(prompt, {image}, {});
  req.generation = engine->default_generation();
  req.generation.do_sample = false;
  req.generation.max_new_tokens = 12;
  req.processor.min_pixels = 16384;
  req.processor.max_pixels = 65536;
  std::string streamed;
  ChatResult lib = engine->chat(req, [&](const std::string& piece, int64_t) {
    streamed += piece;
    return true;
  });
  EXPECT_EQ(streamed, lib.text);
  EXPECT_EQ(lib.completion_tokens, static_cast<int64_t>(lib.tokens.size()));
  EXPECT_GT(lib.completion_tokens, 0);
  ASSERT_EQ(lib.media.size(), 1u);
  EXPECT_EQ(lib.media[0].tokens, lib.media[0].grid.h * lib.media[0].grid.w / 4);

  int status = -1;
  std::string cmd = std::string(QWEN3VL_CLI) + " run -m '" + dir.string() + "' --image '" + image + "' -p '" + prompt +
                    "' -n 12 --greedy --ctx 2048 --min-pixels 16384 --max-pixels 65536 2>/dev/null";
  std::string out = run_capture(cmd, &status);
  EXPECT_EQ(status, 0) << cmd;
  EXPECT_EQ(out, lib.text + "\n");
}

TEST(RunCommand, ClearErrorForMissingImage) {
  auto dir = test::generated_model("--preset tiny --seed 0 --dtype bf16");
  int status = -1;
  std::string out = run_capture(std::string(QWEN3VL_CLI) + " run -m '" + dir.string() +
                                    "' --image /nonexistent.png -p hi -n 2 2>&1",
                                &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("/nonexistent.png"), std::string::npos) << out;
}

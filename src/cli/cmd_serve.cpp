// qwen3vl serve: an OpenAI-compatible HTTP server (POST /v1/chat/completions, GET /v1/models,
// /health, /metrics) with a web chat page at /. SIGINT / SIGTERM stop it cleanly.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <thread>

#include "cli/command.h"
#include "core/error.h"
#include "pipeline/engine.h"
#include "server/server.h"

namespace qwen3vl::cli {

namespace {

void print_usage() {
  std::printf(
      "usage: qwen3vl serve -m DIR [options]\n\n"
      "  -m, --model DIR          checkpoint folder\n"
      "  --host ADDR              listen address (default 127.0.0.1)\n"
      "  --port N                 port (default 8080; 0: any free port, printed at start)\n"
      "  --media-dir DIR          allow file:// URLs and plain paths inside DIR (default: none)\n"
      "  --allow-remote-urls      accepted, but http(s) image URLs are still refused (no fetcher)\n"
      "  --api-key KEY            require 'Authorization: Bearer KEY' on /v1/*\n"
      "  --max-body-bytes N       request body limit (default 67108864); larger gets 413\n"
      "  --max-queue N            requests admitted at once, running + waiting (default 8); more get 429\n"
      "  -c, --ctx N              context length per request in tokens (default 8192)\n"
      "  -t, --threads N          threads (default: all cores)\n"
      "  --quant none|q8|q4       quantize the text decoder's weights at load (Q8_0 / Q4_0 blocks;\n"
      "                           default none: as stored)\n"
      "  --quant-vision none|q8|q4  the same for the vision tower's linear layers (default none)\n"
      "  --min-pixels N --max-pixels N   default image budget (requests may set min_pixels / max_pixels)\n"
      "  --model-name NAME        id reported by /v1/models (default: the folder name)\n");
}

}  // namespace

static int cmd_serve(Args& a) {
  if (a.flag({"--help", "-h"})) {
    print_usage();
    return 0;
  }
  EngineOptions eo;
  eo.model_dir = a.get_or({"-m", "--model"}, "");
  eo.context_length = a.get_int({"-c", "--ctx", "--ctx-size"}, 8192);
  eo.threads = static_cast<int>(a.get_int({"-t", "--threads"}, 0));
  eo.quant.text = parse_quant_mode(a.get_or({"--quant"}, "none"), "--quant");
  eo.quant.vision = parse_quant_mode(a.get_or({"--quant-vision"}, "none"), "--quant-vision");
  server::ServerOptions so;
  so.host = a.get_or({"--host"}, "127.0.0.1");
  so.port = static_cast<int>(a.get_int({"--port"}, 8080));
  so.media_dir = a.get_or({"--media-dir"}, "");
  so.allow_remote_urls = a.flag({"--allow-remote-urls"});
  so.api_key = a.get_or({"--api-key"}, "");
  const long long max_body = a.get_int({"--max-body-bytes"}, 64LL << 20);
  const long long max_queue = a.get_int({"--max-queue"}, 8);
  if (auto v = a.get({"--min-pixels"})) so.min_pixels = std::stoll(*v);
  if (auto v = a.get({"--max-pixels"})) so.max_pixels = std::stoll(*v);
  so.model_name = a.get_or({"--model-name"}, "");
  a.reject_unknown();
  QWEN3VL_CHECK(!eo.model_dir.empty(), "missing -m DIR (a Qwen3-VL checkpoint folder)");
  QWEN3VL_CHECK(so.port >= 0 && so.port <= 65535, "--port must be in [0, 65535]");
  QWEN3VL_CHECK(max_body >= 1024, "--max-body-bytes must be >= 1024");
  QWEN3VL_CHECK(max_queue >= 1 && max_queue <= 4096, "--max-queue must be in [1, 4096]");
  so.max_body_bytes = static_cast<size_t>(max_body);
  so.max_queue = static_cast<int>(max_queue);

  // Signals go to a dedicated thread (blocked everywhere else, before any thread starts).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto engine = Engine::load(eo);
  server::Server srv(*engine, so);
  const int port = srv.bind();
  std::fprintf(stderr, "qwen3vl serve: %s on http://%s:%d/ (chat page at /, API at /v1/chat/completions)\n",
               engine->model_name().c_str(), so.host.c_str(), port);
  std::printf("listening on %s:%d\n", so.host.c_str(), port);
  std::fflush(stdout);

  std::thread sig_thread([&] {
    int sig = 0;
    sigwait(&set, &sig);
    std::fprintf(stderr, "qwen3vl serve: signal %d, shutting down\n", sig);
    srv.stop();
  });
  srv.run();
  srv.stop();
  pthread_kill(sig_thread.native_handle(), SIGTERM);  // wakes sigwait when run() ended on its own
  sig_thread.join();
  std::fprintf(stderr, "qwen3vl serve: stopped\n");
  return 0;
}
QWEN3VL_COMMAND("serve", "OpenAI-compatible HTTP server with a web chat page", cmd_serve,
                {"--help", "-h", "--allow-remote-urls"});

}  // namespace qwen3vl::cli

// qwen3vl serve: an OpenAI-compatible HTTP API over one Engine (cpp-httplib).
//
//   POST /v1/chat/completions   messages with text / image_url / video parts, stream (SSE), sampling
//                               fields, usage, plus a "qwen3vl" field (media sizes, grids, timings)
//   GET  /v1/models, /health, /metrics (Prometheus text), /  (a small web chat page)
//
// Requests are admitted up to max_queue at a time (running + waiting for the engine); more get
// 429 with an OpenAI-style error. Media access is restricted: data: URLs and raw base64 always,
// local files only inside media_dir (canonicalized, symlinks and ".." may not escape it), remote
// URLs never (there is no fetcher).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pipeline/engine.h"

namespace httplib {
class Server;
class Request;
class Response;
}  // namespace httplib

namespace qwen3vl::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                          // 0: an ephemeral port (see Server::port())
  std::filesystem::path media_dir;          // empty: no local file access
  bool allow_remote_urls = false;           // accepted flag; remote URLs are still refused (no fetcher)
  std::string api_key;                      // empty: no auth
  size_t max_body_bytes = size_t(64) << 20;
  int max_queue = 8;                        // requests admitted at once (running + waiting)
  std::optional<int64_t> min_pixels, max_pixels;  // server-wide image budget (per request overrides)
  std::string model_name;                   // reported by /v1/models (default: the engine's)
};

// An error the client caused or must see: HTTP status + OpenAI error fields.
struct HttpError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;   // empty: null
  std::string code;    // empty: null
};
nlohmann::json error_body(const HttpError& e);

// Parsing of a /v1/chat/completions body (exposed for tests). Throws HttpError.
struct ParsedChatRequest {
  ChatRequest chat;             // messages normalized to the processor's format
  bool stream = false;
  bool include_usage = false;   // stream_options.include_usage
  std::string model;
};
ParsedChatRequest parse_chat_request(const nlohmann::json& body, const Engine& engine, const ServerOptions& opts);

// The media policy of ServerOptions as a ProcessorOptions fetcher / video resolver.
std::vector<uint8_t> fetch_media(const std::string& ref, const ServerOptions& opts);
std::filesystem::path resolve_video(const std::string& ref, const ServerOptions& opts);

class Server {
 public:
  Server(const Engine& engine, ServerOptions opts);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port (port 0: ephemeral); returns the bound port. Throws Error when it cannot bind.
  int bind();
  int port() const { return port_; }
  // Serves until stop() (blocking). bind() first.
  void run();
  // Thread-safe / signal-thread-safe: cancels running generations and makes run() return.
  void stop();

  struct Metrics;

 private:
  void setup_routes();
  void handle_chat(const httplib::Request& req, httplib::Response& res);
  bool authorized(const httplib::Request& req, httplib::Response& res);
  std::string metrics_text();

  const Engine& engine_;
  ServerOptions opts_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  std::shared_ptr<Metrics> metrics_;
  std::shared_ptr<std::atomic<bool>> stopping_;
  // run() was entered / has returned: stop() waits (bounded) for httplib's accept loop to start,
  // since httplib's stop() does nothing before that and run() would then never return.
  std::atomic<bool> run_entered_{false}, run_returned_{false};
  std::shared_ptr<std::mutex> engine_mu_;   // one generation at a time (queue depth is observable)
};

}  // namespace qwen3vl::server

// qwen3vl serve: OpenAI-compatible HTTP API (see server.h).
#include "server/server.h"

#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <random>
#include <thread>

#include "core/error.h"
#include "server/web_page.h"

namespace qwen3vl::server {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
std::string dump(const ordered_json& j) { return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace); }

[[noreturn]] void bad(const std::string& message, const std::string& param = "", const std::string& code = "") {
  throw HttpError{400, message, "invalid_request_error", param, code};
}

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string new_id() {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard<std::mutex> lk(mu);
  char buf[40];
  std::snprintf(buf, sizeof(buf), "chatcmpl-%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

void send_error(httplib::Response& res, const HttpError& e) {
  res.status = e.status;
  res.set_content(dump(error_body(e)), "application/json");
}

// ---- typed field access ----------------------------------------------------------------------
const json* field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

double number_in(const json& obj, const char* key, double lo, double hi) {
  const json& v = obj.at(key);
  if (!v.is_number()) bad(std::string("'") + key + "' must be a number", key);
  double x = v.get<double>();
  if (!(x >= lo && x <= hi))
    bad(std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
            std::to_string(x),
        key);
  return x;
}

int64_t integer_at_least(const json& v, const std::string& param, int64_t lo) {
  if (!v.is_number_integer()) bad("'" + param + "' must be an integer", param);
  int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : v.get<int64_t>();
  if (x < lo) bad("'" + param + "' must be >= " + std::to_string(lo) + ", got " + std::to_string(x), param);
  return x;
}

// Known image magic numbers as base64 prefixes: PNG, JPEG, WebP (RIFF), GIF.
bool looks_like_raw_base64_image(const std::string& s) {
  for (const char* p : {"iVBORw0KGgo", "/9j/", "UklGR", "R0lGOD"})
    if (s.rfind(p, 0) == 0) return true;
  return false;
}

ordered_json normalize_part(const json& part, const std::string& param) {
  if (!part.is_object()) bad("content parts must be objects", param);
  const json* t = field(part, "type");
  if (!t || !t->is_string()) bad("content part needs a string 'type'", param + ".type");
  const std::string type = t->get<std::string>();
  auto url_of = [&](const char* key) -> std::string {
    const json* v = field(part, key);
    if (!v) bad("content part of type '" + type + "' needs '" + key + "'", param + "." + key);
    if (v->is_string()) return v->get<std::string>();
    if (v->is_object()) {
      const json* u = field(*v, "url");
      if (u && u->is_string()) return u->get<std::string>();
    }
    bad(std::string("'") + key + "' must be a string or an object with a string 'url'", param + "." + key);
  };
  if (type == "text") {
    const json* v = field(part, "text");
    if (!v || !v->is_string()) bad("text part needs a string 'text'", param + ".text");
    return {{"type", "text"}, {"text", v->get<std::string>()}};
  }
  if (type == "image_url" || type == "image") {
    std::string url = type == "image_url" ? url_of("image_url") : url_of(part.contains("image") ? "image" : "image_url");
    if (url.empty()) bad("empty image URL", param);
    return {{"type", "image"}, {"image", url}};
  }
  if (type == "video" || type == "video_url") {
    const json* v = field(part, "video");
    if (type == "video" && v && v->is_array()) {
      ordered_json frames = ordered_json::array();
      for (const auto& f : *v) {
        if (!f.is_string()) bad("video frames must be strings (image URLs)", param + ".video");
        frames.push_back(f.get<std::string>());
      }
      if (frames.empty()) bad("video part with no frames", param + ".video");
      ordered_json out = {{"type", "video"}, {"video", frames}};
      if (const json* fps = field(part, "fps")) {
        if (!fps->is_number() || fps->get<double>() <= 0) bad("'fps' must be a positive number", param + ".fps");
        out["fps"] = fps->get<double>();
      }
      return out;
    }
    std::string url = url_of(type == "video" ? "video" : "video_url");
    if (url.empty()) bad("empty video URL", param);
    return {{"type", "video"}, {"video", url}};
  }
  bad("unsupported content part type '" + type + "' (text, image_url, image, video, video_url)", param + ".type");
}

ordered_json normalize_messages(const json& msgs) {
  if (!msgs.is_array() || msgs.empty()) bad("'messages' must be a non-empty array", "messages");
  ordered_json out = ordered_json::array();
  for (size_t i = 0; i < msgs.size(); ++i) {
    const std::string p = "messages[" + std::to_string(i) + "]";
    const json& m = msgs[i];
    if (!m.is_object()) bad(p + " must be an object", p);
    const json* r = field(m, "role");
    if (!r || !r->is_string()) bad(p + " needs a string 'role'", p + ".role");
    std::string role = r->get<std::string>();
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      bad("unsupported role '" + role + "' (system, user, assistant, tool)", p + ".role");
    ordered_json om = {{"role", role}};
    const json* c = field(m, "content");
    if (!c) {
      if (role != "assistant") bad(p + " needs 'content'", p + ".content");
      om["content"] = "";
    } else if (c->is_string()) {
      om["content"] = c->get<std::string>();
    } else if (c->is_array()) {
      ordered_json parts = ordered_json::array();
      for (size_t j = 0; j < c->size(); ++j)
        parts.push_back(normalize_part((*c)[j], p + ".content[" + std::to_string(j) + "]"));
      om["content"] = parts;
    } else {
      bad(p + ".content must be a string or an array of parts", p + ".content");
    }
    out.push_back(om);
  }
  return out;
}

fs::path local_media_path(const std::string& ref, const ServerOptions& opts) {
  QWEN3VL_CHECK(!opts.media_dir.empty(),
                "local media paths are disabled on this server (start it with --media-dir DIR); send images as "
                "data: URLs");
  std::string s = ref;
  if (s.rfind("file://", 0) == 0) {
    s = s.substr(7);
    if (s.rfind("localhost/", 0) == 0) s = s.substr(9);
  }
  QWEN3VL_CHECK(!s.empty() && s.find('\0') == std::string::npos, "invalid media path '" + ref + "'");
  std::error_code ec;
  fs::path base = fs::canonical(opts.media_dir, ec);
  QWEN3VL_CHECK(!ec, "the media directory is not accessible");
  fs::path p(s);
  if (p.is_relative()) p = base / p;
  fs::path real = fs::canonical(p, ec);
  QWEN3VL_CHECK(!ec, "media file not found: '" + ref + "'");
  auto bi = base.begin();
  auto ri = real.begin();
  for (; bi != base.end(); ++bi, ++ri)
    QWEN3VL_CHECK(ri != real.end() && *bi == *ri, "'" + ref + "' is outside the media directory (refused)");
  QWEN3VL_CHECK(fs::is_regular_file(real, ec), "'" + ref + "' is not a regular file");
  return real;
}

// A streamed request: the engine runs on its own thread and produces SSE events; the HTTP
// worker drains them.
struct StreamState {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> events;
  bool started = false;   // the first event is queued: the response is committed to 200
  bool done = false;      // no more events
  bool finished = false;  // the engine thread has exited
  std::optional<HttpError> error;  // before started
  std::atomic<bool> cancelled{false};
};

}  // namespace

nlohmann::json error_body(const HttpError& e) {
  json err = {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return {{"error", err}};
}

ParsedChatRequest parse_chat_request(const json& body, const Engine& engine, const ServerOptions& opts) {
  if (!body.is_object()) bad("the request body must be a JSON object");
  ParsedChatRequest out;
  const json* msgs = field(body, "messages");
  if (!msgs) bad("'messages' is required", "messages");
  out.chat.messages = normalize_messages(*msgs);
  if (const json* m = field(body, "model")) {
    if (!m->is_string()) bad("'model' must be a string", "model");
    out.model = m->get<std::string>();
  }
  if (const json* s = field(body, "stream")) {
    if (!s->is_boolean()) bad("'stream' must be a boolean", "stream");
    out.stream = s->get<bool>();
  }
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("'stream_options' must be an object", "stream_options");
    if (const json* iu = field(*so, "include_usage")) {
      if (!iu->is_boolean()) bad("'stream_options.include_usage' must be a boolean", "stream_options.include_usage");
      out.include_usage = iu->get<bool>();
    }
  }
  if (const json* n = field(body, "n")) {
    if (!n->is_number_integer() || n->get<int64_t>() != 1) bad("only n = 1 is supported", "n");
  }

  GenerationConfig& g = out.chat.generation;
  g = engine.default_generation();
  g.max_new_tokens = engine.context_length();  // the engine clamps to what fits
  if (field(body, "temperature")) {
    g.temperature = static_cast<float>(number_in(body, "temperature", 0.0, 2.0));
    g.do_sample = g.temperature > 0;
  }
  if (field(body, "top_p")) g.top_p = static_cast<float>(number_in(body, "top_p", 0.0, 1.0));
  if (const json* k = field(body, "top_k")) {
    int64_t v = integer_at_least(*k, "top_k", -1);
    g.top_k = v <= 0 ? 0 : static_cast<int>(std::min<int64_t>(v, INT32_MAX));
  }
  if (field(body, "min_p")) g.min_p = static_cast<float>(number_in(body, "min_p", 0.0, 1.0));
  if (field(body, "presence_penalty")) g.presence_penalty = static_cast<float>(number_in(body, "presence_penalty", -2.0, 2.0));
  if (field(body, "frequency_penalty"))
    g.frequency_penalty = static_cast<float>(number_in(body, "frequency_penalty", -2.0, 2.0));
  if (field(body, "repetition_penalty"))
    g.repetition_penalty = static_cast<float>(number_in(body, "repetition_penalty", 1e-6, 100.0));
  for (const char* key : {"max_tokens", "max_completion_tokens"})
    if (const json* v = field(body, key)) g.max_new_tokens = integer_at_least(*v, key, 1);
  if (const json* v = field(body, "seed")) {
    if (!v->is_number_integer()) bad("'seed' must be an integer", "seed");
    g.seed = v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
  }
  if (const json* st = field(body, "stop")) {
    std::vector<std::string> stops;
    if (st->is_string()) {
      stops.push_back(st->get<std::string>());
    } else if (st->is_array()) {
      for (const auto& s : *st) {
        if (!s.is_string()) bad("'stop' must be a string or a list of strings", "stop");
        stops.push_back(s.get<std::string>());
      }
    } else {
      bad("'stop' must be a string or a list of strings", "stop");
    }
    if (stops.size() > 16) bad("at most 16 stop strings", "stop");
    for (const auto& s : stops)
      if (s.empty()) bad("stop strings must not be empty", "stop");
    g.stop_strings.insert(g.stop_strings.end(), stops.begin(), stops.end());
  }
  try {
    g.validate();
  } catch (const Error& e) {
    bad(e.what());
  }

  ProcessorOptions& po = out.chat.processor;
  po.min_pixels = opts.min_pixels;
  po.max_pixels = opts.max_pixels;
  auto pixels = [&](const json& obj, const std::string& prefix) {
    for (const char* key : {"min_pixels", "max_pixels"}) {
      if (const json* v = field(obj, key)) {
        int64_t x = integer_at_least(*v, prefix + key, 1);
        (std::string(key) == "min_pixels" ? po.min_pixels : po.max_pixels) = x;
      }
    }
  };
  pixels(body, "");
  if (const json* mk = field(body, "mm_processor_kwargs")) {
    if (!mk->is_object()) bad("'mm_processor_kwargs' must be an object", "mm_processor_kwargs");
    pixels(*mk, "mm_processor_kwargs.");
  }
  // One bound given alone and past the model's other bound: move that bound along.
  const ImageProcessorConfig& icfg = engine.processor().image_config();
  if (po.max_pixels && !po.min_pixels && *po.max_pixels < icfg.min_pixels) po.min_pixels = po.max_pixels;
  if (po.min_pixels && !po.max_pixels && *po.min_pixels > icfg.max_pixels) po.max_pixels = po.min_pixels;
  if (po.min_pixels && po.max_pixels && *po.min_pixels > *po.max_pixels)
    bad("min_pixels must be <= max_pixels", "min_pixels");
  ServerOptions copy = opts;
  po.fetch = [copy](const std::string& ref) { return fetch_media(ref, copy); };
  po.resolve_video_path = [copy](const std::string& ref) { return resolve_video(ref, copy); };
  return out;
}

std::vector<uint8_t> fetch_media(const std::string& ref, const ServerOptions& opts) {
  QWEN3VL_CHECK(!ref.empty(), "empty media reference");
  if (ref.rfind("data:", 0) == 0) return decode_data_url(ref);
  if (ref.rfind("http://", 0) == 0 || ref.rfind("https://", 0) == 0) {
    QWEN3VL_CHECK(false, opts.allow_remote_urls
                             ? "remote URLs are not supported (this server has no fetcher): send the image as a "
                               "data: URL"
                             : "remote URLs are refused by this server: send the image as a data: URL");
  }
  auto scheme = ref.find("://");
  QWEN3VL_CHECK(scheme == std::string::npos || ref.rfind("file://", 0) == 0,
                "unsupported media URL scheme in '" + ref.substr(0, std::min<size_t>(ref.size(), 40)) + "'");
  if (scheme == std::string::npos && looks_like_raw_base64_image(ref)) return decode_data_url(ref);
  fs::path p = local_media_path(ref, opts);
  constexpr uintmax_t kMaxFile = uintmax_t(256) << 20;
  std::error_code ec;
  uintmax_t size = fs::file_size(p, ec);
  QWEN3VL_CHECK(!ec && size <= kMaxFile, "media file '" + ref + "' is unreadable or larger than 256 MiB");
  std::ifstream f(p, std::ios::binary);
  QWEN3VL_CHECK(f.good(), "cannot open media file '" + ref + "'");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  f.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  QWEN3VL_CHECK(static_cast<uintmax_t>(f.gcount()) == size, "short read on media file '" + ref + "'");
  return bytes;
}

std::filesystem::path resolve_video(const std::string& ref, const ServerOptions& opts) {
  QWEN3VL_CHECK(ref.rfind("http://", 0) != 0 && ref.rfind("https://", 0) != 0,
                "remote URLs are not supported (this server has no fetcher): put the video in --media-dir");
  QWEN3VL_CHECK(ref.find("://") == std::string::npos || ref.rfind("file://", 0) == 0,
                "unsupported video URL scheme");
  return local_media_path(ref, opts);
}

// ---- metrics ---------------------------------------------------------------------------------
struct Server::Metrics {
  std::mutex mu;
  std::map<std::pair<std::string, int>, uint64_t> requests;  // (path, status) -> count
  uint64_t prompt_tokens = 0, completion_tokens = 0;
  double media_ms = 0, vision_ms = 0, prefill_ms = 0, decode_ms = 0, queue_ms = 0;
  uint64_t generations = 0, cancelled = 0;
  std::atomic<int> admitted{0};  // running + waiting
  std::atomic<int> running{0};
  std::atomic<int> workers{0};   // live stream threads
  std::atomic<int> streams{0};   // stream responses not yet released by httplib

  void record(const ChatResult& r, double queue_wait_ms) {
    std::lock_guard<std::mutex> lk(mu);
    prompt_tokens += static_cast<uint64_t>(r.prompt_tokens);
    completion_tokens += static_cast<uint64_t>(r.completion_tokens);
    media_ms += r.timings.media_ms;
    vision_ms += r.timings.vision_ms;
    prefill_ms += r.timings.prefill_ms;
    decode_ms += r.timings.decode_ms;
    queue_ms += queue_wait_ms;
    ++generations;
    if (r.finish == FinishReason::Cancelled) ++cancelled;
  }
};

namespace {

// Holds one admission slot for as long as it lives.
struct Slot {
  std::shared_ptr<Server::Metrics> m;
  explicit Slot(std::shared_ptr<Server::Metrics> mm) : m(std::move(mm)) {}
  ~Slot() { m->admitted.fetch_sub(1); }
};

const char* openai_finish(FinishReason f) {
  switch (f) {
    case FinishReason::Length: return "length";
    case FinishReason::Eos: return "stop";
    case FinishReason::StopString: return "stop";
    case FinishReason::Cancelled: return "abort";
  }
  return "stop";
}

ordered_json extension(const ChatResult& r, double queue_ms) {
  ordered_json media = ordered_json::array();
  for (const auto& m : r.media) {
    ordered_json e = {{"kind", m.kind},
                      {"width", m.width},
                      {"height", m.height},
                      {"resized_width", m.resized_width},
                      {"resized_height", m.resized_height},
                      {"grid_thw", {m.grid.t, m.grid.h, m.grid.w}},
                      {"tokens", m.tokens}};
    if (m.kind == "video") {
      e["frames"] = m.frames;
      e["timestamps"] = m.timestamps;
    }
    media.push_back(e);
  }
  const auto& t = r.timings;
  return {{"media", media},
          {"timings",
           {{"queue_ms", queue_ms},
            {"media_ms", t.media_ms},
            {"vision_ms", t.vision_ms},
            {"prefill_ms", t.prefill_ms},
            {"decode_ms", t.decode_ms},
            {"decode_tokens", t.decode_tokens},
            {"prefill_tok_s", t.prefill_tok_s(r.prompt_tokens)},
            {"decode_tok_s", t.decode_tok_s()}}},
          {"finish", finish_reason_name(r.finish)},
          {"token_ids", r.tokens}};
}

ordered_json usage(const ChatResult& r) {
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"total_tokens", r.prompt_tokens + r.completion_tokens}};
}

std::string path_label(const std::string& p) {
  for (const char* k : {"/", "/health", "/metrics", "/v1/models", "/v1/chat/completions"})
    if (p == k) return p;
  return "other";
}

// cpp-httplib 0.11 listens with a backlog of 5: a burst of concurrent clients then sees resets
// before the server can even answer 429. httplib does not expose the listening socket, so find
// it (a listening socket bound to `port`) and raise the backlog; listen() on a listening socket
// only updates it.
void widen_listen_backlog(int port) {
  for (int fd = 3; fd < 4096; ++fd) {
    int acc = 0;
    socklen_t len = sizeof(acc);
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0 || !acc) continue;
    sockaddr_storage ss{};
    socklen_t sl = sizeof(ss);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) != 0) continue;
    int p = ss.ss_family == AF_INET    ? ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port)
            : ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                       : -1;
    if (p == port) ::listen(fd, 1024);
  }
}

}  // namespace

Server::Server(const Engine& engine, ServerOptions opts)
    : engine_(engine),
      opts_(std::move(opts)),
      http_(std::make_unique<httplib::Server>()),
      metrics_(std::make_shared<Metrics>()),
      stopping_(std::make_shared<std::atomic<bool>>(false)),
      engine_mu_(std::make_shared<std::mutex>()) {
  QWEN3VL_CHECK(opts_.max_queue >= 1, "--max-queue must be >= 1");
  QWEN3VL_CHECK(opts_.max_body_bytes >= 1024, "--max-body-bytes must be >= 1024");
  if (!opts_.media_dir.empty()) {
    std::error_code ec;
    QWEN3VL_CHECK(fs::is_directory(opts_.media_dir, ec), "--media-dir " + opts_.media_dir.string() + " is not a directory");
  }
  if (opts_.model_name.empty()) opts_.model_name = engine_.model_name();
  setup_routes();
}

Server::~Server() {
  stop();
  // Stream threads end at their next token once stopping_ is set; wait (bounded) for them.
  for (int i = 0; i < 6000 && metrics_->workers.load() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

int Server::bind() {
  int port = opts_.port == 0 ? http_->bind_to_any_port(opts_.host) : (http_->bind_to_port(opts_.host, opts_.port) ? opts_.port : -1);
  QWEN3VL_CHECK(port > 0, "cannot listen on " + opts_.host + ":" + std::to_string(opts_.port));
  port_ = port;
  widen_listen_backlog(port);
  return port;
}

void Server::run() {
  run_entered_ = true;
  if (!stopping_->load()) http_->listen_after_bind();
  run_returned_ = true;
}

void Server::stop() {
  const bool first = !stopping_->exchange(true);
  // Running generations see stopping_ at their next token and end with finish_reason "abort";
  // give open streams a moment (bounded) to send that final chunk and [DONE] before httplib
  // stops writing.
  for (int i = 0; first && i < 300 && (metrics_->workers.load() > 0 || metrics_->streams.load() > 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // A stop() racing a run() that has not reached httplib's accept loop yet would be lost.
  for (int i = 0; run_entered_ && !run_returned_ && !http_->is_running() && i < 500; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  http_->stop();
}

bool Server::authorized(const httplib::Request& req, httplib::Response& res) {
  if (opts_.api_key.empty()) return true;
  if (req.get_header_value("Authorization") == "Bearer " + opts_.api_key) return true;
  send_error(res, HttpError{401, "invalid or missing API key (Authorization: Bearer KEY)", "authentication_error", "",
                            "invalid_api_key"});
  return false;
}

std::string Server::metrics_text() {
  Metrics& m = *metrics_;
  std::string s;
  char buf[256];
  std::lock_guard<std::mutex> lk(m.mu);
  s += "# HELP qwen3vl_requests_total HTTP requests by path and status.\n# TYPE qwen3vl_requests_total counter\n";
  for (const auto& [k, v] : m.requests) {
    std::snprintf(buf, sizeof(buf), "qwen3vl_requests_total{path=\"%s\",status=\"%d\"} %llu\n", k.first.c_str(),
                  k.second, static_cast<unsigned long long>(v));
    s += buf;
  }
  auto counter = [&](const char* name, const char* help, double v) {
    std::snprintf(buf, sizeof(buf), "# HELP %s %s\n# TYPE %s counter\n%s %.17g\n", name, help, name, name, v);
    s += buf;
  };
  auto gauge = [&](const char* name, const char* help, double v) {
    std::snprintf(buf, sizeof(buf), "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
    s += buf;
  };
  counter("qwen3vl_prompt_tokens_total", "Prompt tokens processed.", static_cast<double>(m.prompt_tokens));
  counter("qwen3vl_completion_tokens_total", "Completion tokens generated.", static_cast<double>(m.completion_tokens));
  counter("qwen3vl_generations_total", "Engine runs finished.", static_cast<double>(m.generations));
  counter("qwen3vl_generations_cancelled_total", "Engine runs cancelled (client gone or shutdown).",
          static_cast<double>(m.cancelled));
  s += "# HELP qwen3vl_stage_seconds_total Time spent per stage.\n# TYPE qwen3vl_stage_seconds_total counter\n";
  for (auto [name, ms] : {std::pair<const char*, double>{"queue", m.queue_ms}, {"media", m.media_ms},
                          {"vision", m.vision_ms}, {"prefill", m.prefill_ms}, {"decode", m.decode_ms}}) {
    std::snprintf(buf, sizeof(buf), "qwen3vl_stage_seconds_total{stage=\"%s\"} %.6f\n", name, ms / 1000.0);
    s += buf;
  }
  const int admitted = m.admitted.load(), running = m.running.load();
  gauge("qwen3vl_queue_depth", "Admitted requests waiting for the engine.", std::max(0, admitted - running));
  gauge("qwen3vl_requests_in_flight", "Requests running on the engine.", running);
  gauge("qwen3vl_queue_capacity", "Requests admitted at once (--max-queue).", opts_.max_queue);
  return s;
}

void Server::setup_routes() {
  httplib::Server& h = *http_;
  const int threads = opts_.max_queue + 8;
  h.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  h.set_payload_max_length(opts_.max_body_bytes);
  h.set_keep_alive_timeout(5);
  h.set_read_timeout(30);
  h.set_write_timeout(30);

  auto metrics = metrics_;
  h.set_logger([metrics](const httplib::Request& req, const httplib::Response& res) {
    std::lock_guard<std::mutex> lk(metrics->mu);
    ++metrics->requests[{path_label(req.path), res.status}];
  });
  const size_t max_body = opts_.max_body_bytes;
  h.set_error_handler([max_body](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    HttpError e{res.status, "HTTP " + std::to_string(res.status), "invalid_request_error", "", ""};
    if (res.status == 404) e.message = "not found: " + req.method + " " + req.path, e.code = "not_found";
    if (res.status == 413)
      e.message = "request body is larger than " + std::to_string(max_body) + " bytes (--max-body-bytes)",
      e.code = "request_too_large";
    if (res.status >= 500) e.type = "server_error";
    res.set_content(dump(error_body(e)), "application/json");
  });
  h.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string msg = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      msg = std::string("internal error: ") + e.what();
    } catch (...) {
    }
    send_error(res, HttpError{500, msg, "server_error", "", ""});
  });

  h.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content(kWebPage, "text/html; charset=utf-8"); });
  h.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\":\"ok\"}", "application/json");
  });
  h.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
  h.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    ordered_json j = {{"object", "list"},
                      {"data",
                       {{{"id", opts_.model_name},
                         {"object", "model"},
                         {"created", now_s()},
                         {"owned_by", "qwen3vl"},
                         {"max_model_len", engine_.context_length()}}}}};
    res.set_content(dump(j), "application/json");
  });
  h.Post("/v1/chat/completions",
         [this](const httplib::Request& req, httplib::Response& res) { handle_chat(req, res); });
}

void Server::handle_chat(const httplib::Request& req, httplib::Response& res) {
  if (!authorized(req, res)) return;
  ParsedChatRequest pr;
  try {
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded()) bad("the request body is not valid JSON");
    pr = parse_chat_request(body, engine_, opts_);
  } catch (const HttpError& e) {
    send_error(res, e);
    return;
  }
  if (stopping_->load()) {
    send_error(res, HttpError{503, "the server is shutting down", "server_error", "", "shutting_down"});
    return;
  }
  if (metrics_->admitted.fetch_add(1) >= opts_.max_queue) {
    metrics_->admitted.fetch_sub(1);
    res.set_header("Retry-After", "1");
    send_error(res, HttpError{429,
                              "the server is busy: " + std::to_string(opts_.max_queue) +
                                  " requests are already running or queued (--max-queue); retry later",
                              "rate_limit_error", "", "queue_full"});
    return;
  }
  auto slot = std::make_shared<Slot>(metrics_);

  const std::string id = new_id();
  const int64_t created = now_s();
  const std::string model = pr.model.empty() ? opts_.model_name : pr.model;
  auto metrics = metrics_;
  auto stopping = stopping_;
  auto engine_mu = engine_mu_;
  const Engine* engine = &engine_;

  if (!pr.stream) {
    try {
      auto t0 = std::chrono::steady_clock::now();
      std::unique_lock<std::mutex> lk(*engine_mu);
      double queue_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      metrics->running.fetch_add(1);
      ChatResult r;
      try {
        r = engine->chat(pr.chat, [stopping](const std::string&, int64_t) { return !stopping->load(); });
      } catch (...) {
        metrics->running.fetch_sub(1);
        throw;
      }
      metrics->running.fetch_sub(1);
      lk.unlock();
      metrics->record(r, queue_ms);
      ordered_json j = {{"id", id},
                        {"object", "chat.completion"},
                        {"created", created},
                        {"model", model},
                        {"choices",
                         {{{"index", 0},
                           {"message", {{"role", "assistant"}, {"content", r.text}}},
                           {"logprobs", nullptr},
                           {"finish_reason", openai_finish(r.finish)}}}},
                        {"usage", usage(r)},
                        {"qwen3vl", extension(r, queue_ms)}};
      res.set_content(dump(j), "application/json");
    } catch (const Error& e) {
      send_error(res, HttpError{400, e.what(), "invalid_request_error", "messages", ""});
    }
    return;
  }

  // ---- streaming ----
  auto st = std::make_shared<StreamState>();
  auto chunk = [id, created, model](const ordered_json& delta, const char* finish) {
    ordered_json j = {{"id", id},
                      {"object", "chat.completion.chunk"},
                      {"created", created},
                      {"model", model},
                      {"choices",
                       {{{"index", 0},
                         {"delta", delta},
                         {"logprobs", nullptr},
                         {"finish_reason", finish ? ordered_json(finish) : ordered_json(nullptr)}}}}};
    return j;
  };
  auto sse = [](const ordered_json& j) { return "data: " + dump(j) + "\n\n"; };
  metrics->workers.fetch_add(1);
  struct WorkerGuard {  // undoes the count if the thread cannot be started
    std::shared_ptr<Metrics> m;
    bool armed = true;
    ~WorkerGuard() {
      if (armed) m->workers.fetch_sub(1);
    }
  } worker_guard{metrics};
  const bool include_usage = pr.include_usage;
  std::thread([st, slot, metrics, stopping, engine_mu, engine, chat = std::move(pr.chat), chunk, sse, id, created,
               model, include_usage]() mutable {
    auto push = [&](std::string ev) {
      std::lock_guard<std::mutex> lk(st->mu);
      if (!st->started) {
        st->events.push_back(sse(chunk({{"role", "assistant"}, {"content", ""}}, nullptr)));
        st->started = true;
      }
      st->events.push_back(std::move(ev));
      st->cv.notify_all();
    };
    try {
      auto t0 = std::chrono::steady_clock::now();
      std::unique_lock<std::mutex> lk(*engine_mu);
      double queue_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      ChatResult r;
      metrics->running.fetch_add(1);
      try {
        if (!st->cancelled.load() && !stopping->load())
          r = engine->chat(chat, [&](const std::string& piece, int64_t) {
            if (!piece.empty()) push(sse(chunk({{"content", piece}}, nullptr)));
            return !st->cancelled.load() && !stopping->load();
          });
        else
          r.finish = FinishReason::Cancelled;
      } catch (...) {
        metrics->running.fetch_sub(1);
        throw;
      }
      metrics->running.fetch_sub(1);
      lk.unlock();
      metrics->record(r, queue_ms);
      ordered_json fin = chunk(ordered_json::object(), openai_finish(r.finish));
      fin["qwen3vl"] = extension(r, queue_ms);
      fin["qwen3vl"]["usage"] = usage(r);
      push(sse(fin));
      if (include_usage) {
        ordered_json u = {{"id", id},           {"object", "chat.completion.chunk"}, {"created", created},
                          {"model", model},     {"choices", ordered_json::array()},  {"usage", usage(r)}};
        push(sse(u));
      }
      push("data: [DONE]\n\n");
    } catch (const std::exception& e) {
      const bool user = dynamic_cast<const Error*>(&e) != nullptr;
      HttpError he{user ? 400 : 500, e.what(), user ? "invalid_request_error" : "server_error", "", ""};
      std::lock_guard<std::mutex> lk(st->mu);
      if (!st->started) {
        st->error = he;
      } else {
        st->events.push_back(sse(ordered_json(error_body(he))));
        st->events.push_back("data: [DONE]\n\n");
      }
    }
    {
      std::lock_guard<std::mutex> lk(st->mu);
      st->done = true;
      st->finished = true;
      st->cv.notify_all();
    }
    slot.reset();
    metrics->workers.fetch_sub(1);
  }).detach();
  worker_guard.armed = false;

  {
    std::unique_lock<std::mutex> lk(st->mu);
    st->cv.wait(lk, [&] { return st->started || st->done; });
    if (!st->started && st->error) {
      send_error(res, *st->error);
      return;
    }
  }
  metrics->streams.fetch_add(1);
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [st](size_t, httplib::DataSink& sink) {
        std::deque<std::string> evs;
        bool done = false;
        {
          std::unique_lock<std::mutex> lk(st->mu);
          st->cv.wait_for(lk, std::chrono::milliseconds(200), [&] { return !st->events.empty() || st->done; });
          evs.swap(st->events);
          done = st->done;
        }
        for (const auto& ev : evs) {
          if (!sink.write(ev.data(), ev.size())) {
            st->cancelled.store(true);
            return false;
          }
        }
        if (evs.empty() && !done && !sink.is_writable()) {
          st->cancelled.store(true);
          return false;
        }
        if (done) sink.done();
        return true;
      },
      [st, metrics](bool success) {
        if (!success) st->cancelled.store(true);
        metrics->streams.fetch_sub(1);
      });
}

}  // namespace qwen3vl::server

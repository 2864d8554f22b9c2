#include "pipeline/video_decode.h"

#include <memory>
#include <set>

#include "core/error.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

namespace qwen3vl {

namespace {

std::string av_err(int e) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(e, buf, sizeof buf);
  return buf;
}

struct FormatCtx {
  AVFormatContext* p = nullptr;
  ~FormatCtx() { if (p) avformat_close_input(&p); }
};
struct CodecCtx {
  AVCodecContext* p = nullptr;
  ~CodecCtx() { if (p) avcodec_free_context(&p); }
};
struct Frame {
  AVFrame* p = av_frame_alloc();
  ~Frame() { av_frame_free(&p); }
};
struct Packet {
  AVPacket* p = av_packet_alloc();
  ~Packet() { av_packet_free(&p); }
};
struct Sws {
  SwsContext* p = nullptr;
  ~Sws() { if (p) sws_freeContext(p); }
};

// Decodes the file, calling on_frame(index, frame) for every decoded frame in order; stops when
// on_frame returns false.
template <typename F>
void for_each_frame(const std::filesystem::path& path, AVFormatContext* fmt, int stream, AVCodecContext* dec, F&& on_frame) {
  Packet pkt;
  Frame frame;
  int64_t index = 0;
  bool more = true;
  auto drain = [&]() -> bool {
    for (;;) {
      int r = avcodec_receive_frame(dec, frame.p);
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return true;
      if (r < 0) throw Error(path.string() + ": video decode error: " + av_err(r));
      bool go = on_frame(index++, frame.p);
      av_frame_unref(frame.p);
      if (!go) return false;
    }
  };
  while (more) {
    int r = av_read_frame(fmt, pkt.p);
    if (r < 0) break;
    if (pkt.p->stream_index == stream) {
      r = avcodec_send_packet(dec, pkt.p);
      av_packet_unref(pkt.p);
      if (r < 0 && r != AVERROR(EAGAIN)) throw Error(path.string() + ": video decode error: " + av_err(r));
      more = drain();
    } else {
      av_packet_unref(pkt.p);
    }
  }
  if (more) {
    avcodec_send_packet(dec, nullptr);
    drain();
  }
}

struct Opened {
  FormatCtx fmt;
  CodecCtx dec;
  int stream = -1;
};

void open_video(const std::filesystem::path& path, Opened& o) {
  int r = avformat_open_input(&o.fmt.p, path.c_str(), nullptr, nullptr);
  if (r < 0) throw Error(path.string() + ": cannot open video: " + av_err(r));
  r = avformat_find_stream_info(o.fmt.p, nullptr);
  if (r < 0) throw Error(path.string() + ": cannot read stream info: " + av_err(r));
  const AVCodec* codec = nullptr;
  o.stream = av_find_best_stream(o.fmt.p, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  if (o.stream < 0 || !codec) throw Error(path.string() + ": no decodable video stream");
  o.dec.p = avcodec_alloc_context3(codec);
  if (!o.dec.p) throw Error("out of memory opening " + path.string());
  avcodec_parameters_to_context(o.dec.p, o.fmt.p->streams[o.stream]->codecpar);
  o.dec.p->thread_count = 1;
  r = avcodec_open2(o.dec.p, codec, nullptr);
  if (r < 0) throw Error(path.string() + ": cannot open decoder: " + av_err(r));
}

}  // namespace

VideoFrames decode_video_file(const std::filesystem::path& path, const VideoSamplingConfig& sampling,
                              const VideoDecodeLimits& limits) {
  av_log_set_level(AV_LOG_ERROR);
  VideoFrames out;
  int64_t total = 0;
  {
    Opened o;
    open_video(path, o);
    AVStream* st = o.fmt.p->streams[o.stream];
    AVRational rate = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
    out.fps = rate.den > 0 && rate.num > 0 ? av_q2d(rate) : 0.0;
    total = st->nb_frames;
    if (total <= 0) {  // container does not say: count by decoding
      total = 0;
      for_each_frame(path, o.fmt.p, o.stream, o.dec.p, [&](int64_t, AVFrame*) {
        QWEN3VL_CHECK(++total <= limits.max_frames_in_file, path.string() + ": too many frames");
        return true;
      });
    }
  }
  QWEN3VL_CHECK(total > 0, path.string() + ": video has no frames");
  QWEN3VL_CHECK(total <= limits.max_frames_in_file, path.string() + ": too many frames (" + std::to_string(total) + ")");
  out.indices = sample_frame_indices(total, out.fps, sampling);
  std::vector<int64_t> wanted = out.indices;  // sorted, may repeat
  Opened o;
  open_video(path, o);
  Sws sws;
  size_t next = 0;
  Image last;
  for_each_frame(path, o.fmt.p, o.stream, o.dec.p, [&](int64_t idx, AVFrame* f) {
    if (next >= wanted.size()) return false;
    if (idx != wanted[next]) return true;
    QWEN3VL_CHECK(f->width > 0 && f->height > 0 &&
                      static_cast<int64_t>(f->width) * f->height <= limits.max_pixels_per_frame,
                  path.string() + ": bad frame size");
    Image img;
    img.width = f->width;
    img.height = f->height;
    img.rgb.resize(static_cast<size_t>(img.width) * img.height * 3);
    sws.p = sws_getCachedContext(sws.p, f->width, f->height, static_cast<AVPixelFormat>(f->format), f->width,
                                 f->height, AV_PIX_FMT_RGB24, SWS_BILINEAR, nullptr, nullptr, nullptr);
    QWEN3VL_CHECK(sws.p, path.string() + ": unsupported pixel format");
    uint8_t* dst[4] = {img.rgb.data(), nullptr, nullptr, nullptr};
    int dst_stride[4] = {img.width * 3, 0, 0, 0};
    sws_scale(sws.p, f->data, f->linesize, 0, f->height, dst, dst_stride);
    while (next < wanted.size() && wanted[next] == idx) {
      out.frames.push_back(img);
      ++next;
    }
    return next < wanted.size();
  });
  // Frame counts in headers can overstate what decodes: reuse the last decoded frame, like
  // decoders that pad, but only for a small shortfall.
  QWEN3VL_CHECK(!out.frames.empty(), path.string() + ": no frame could be decoded");
  QWEN3VL_CHECK(out.frames.size() + 2 >= wanted.size(),
                path.string() + ": only " + std::to_string(out.frames.size()) + " of " + std::to_string(wanted.size()) +
                    " sampled frames could be decoded");
  while (out.frames.size() < wanted.size()) out.frames.push_back(out.frames.back());
  return out;
}

}  // namespace qwen3vl

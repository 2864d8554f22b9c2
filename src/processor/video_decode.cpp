// Video file decoding with FFmpeg (see video.h).
#include <algorithm>
#include <memory>
#include <set>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

#include "core/error.h"
#include "processor/video.h"

namespace qwen3vl {

namespace {

[[noreturn]] void vfail(const std::filesystem::path& p, const std::string& msg) {
  throw Error("video '" + p.string() + "': " + msg);
}

std::string av_err(int e) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(e, buf, sizeof(buf));
  return buf;
}

struct Demux {
  AVFormatContext* fmt = nullptr;
  AVCodecContext* dec = nullptr;
  int stream = -1;
  ~Demux() {
    if (dec) avcodec_free_context(&dec);
    if (fmt) avformat_close_input(&fmt);
  }
};

void open_video(const std::filesystem::path& path, Demux& d, const DecodeLimits& lim) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) vfail(path, "no such file");
  int r = avformat_open_input(&d.fmt, path.c_str(), nullptr, nullptr);
  if (r < 0) vfail(path, "cannot open or recognise the container: " + av_err(r));
  if ((r = avformat_find_stream_info(d.fmt, nullptr)) < 0) vfail(path, "cannot read stream info: " + av_err(r));
  const AVCodec* codec = nullptr;
  d.stream = av_find_best_stream(d.fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  if (d.stream < 0 || !codec) vfail(path, "no decodable video stream");
  AVStream* st = d.fmt->streams[d.stream];
  const int64_t w = st->codecpar->width, h = st->codecpar->height;
  if (w <= 0 || h <= 0) vfail(path, "invalid frame size " + std::to_string(w) + "x" + std::to_string(h));
  if (w > lim.max_side || h > lim.max_side || w * h > lim.max_pixels)
    vfail(path, "frame size " + std::to_string(w) + "x" + std::to_string(h) + " exceeds the decode limits");
  d.dec = avcodec_alloc_context3(codec);
  if (!d.dec) vfail(path, "out of memory");
  if ((r = avcodec_parameters_to_context(d.dec, st->codecpar)) < 0) vfail(path, "bad codec parameters: " + av_err(r));
  d.dec->thread_count = 1;
  if ((r = avcodec_open2(d.dec, codec, nullptr)) < 0) vfail(path, "cannot open decoder: " + av_err(r));
}

// Calls on_frame(index, frame) for each decoded frame in order until it returns false.
template <typename F>
void for_each_frame(const std::filesystem::path& path, Demux& d, F&& on_frame) {
  AVPacket* pkt = av_packet_alloc();
  AVFrame* frame = av_frame_alloc();
  std::unique_ptr<AVPacket, void (*)(AVPacket*)> pk(pkt, [](AVPacket* p) { av_packet_free(&p); });
  std::unique_ptr<AVFrame, void (*)(AVFrame*)> fr(frame, [](AVFrame* f) { av_frame_free(&f); });
  int64_t index = 0;
  bool go = true;
  auto drain = [&]() {
    while (go) {
      int r = avcodec_receive_frame(d.dec, frame);
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      if (r < 0) vfail(path, "decoding error: " + av_err(r));
      go = on_frame(index++, frame);
      av_frame_unref(frame);
    }
  };
  while (go) {
    int r = av_read_frame(d.fmt, pkt);
    if (r < 0) break;  // end of file (or read error: treat as end, like PyAV's iterator)
    if (pkt->stream_index == d.stream) {
      r = avcodec_send_packet(d.dec, pkt);
      av_packet_unref(pkt);
      if (r < 0 && r != AVERROR(EAGAIN)) vfail(path, "decoding error: " + av_err(r));
      drain();
    } else {
      av_packet_unref(pkt);
    }
  }
  if (go) {
    avcodec_send_packet(d.dec, nullptr);
    drain();
  }
}

Image to_rgb(const std::filesystem::path& path, const AVFrame* f) {
  Image img;
  img.width = f->width;
  img.height = f->height;
  img.rgb.resize(size_t(f->width) * f->height * 3);
  // PyAV's to_ndarray("rgb24") goes through swscale with SWS_BILINEAR (no scaling here).
  SwsContext* sws = sws_getContext(f->width, f->height, static_cast<AVPixelFormat>(f->format), f->width, f->height,
                                   AV_PIX_FMT_RGB24, SWS_BILINEAR, nullptr, nullptr, nullptr);
  if (!sws) vfail(path, "unsupported pixel format for RGB conversion");
  uint8_t* dst[4] = {img.rgb.data(), nullptr, nullptr, nullptr};
  int dst_stride[4] = {f->width * 3, 0, 0, 0};
  sws_scale(sws, f->data, f->linesize, 0, f->height, dst, dst_stride);
  sws_freeContext(sws);
  return img;
}

}  // namespace

VideoFileInfo probe_video_file(const std::filesystem::path& path, const DecodeLimits& lim) {
  Demux d;
  open_video(path, d, lim);
  AVStream* st = d.fmt->streams[d.stream];
  VideoFileInfo info;
  info.width = st->codecpar->width;
  info.height = st->codecpar->height;
  info.codec = avcodec_get_name(st->codecpar->codec_id);
  if (st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0) info.fps = av_q2d(st->avg_frame_rate);
  info.total_num_frames = st->nb_frames;
  if (info.total_num_frames <= 0) {  // not stored by the container: count by decoding
    int64_t n = 0;
    for_each_frame(path, d, [&](int64_t, const AVFrame*) { ++n; return true; });
    info.total_num_frames = n;
  }
  return info;
}

std::vector<Image> decode_video_frames(const std::filesystem::path& path, const std::vector<int64_t>& indices,
                                       const DecodeLimits& lim) {
  std::vector<Image> out;
  if (indices.empty()) return out;
  Demux d;
  open_video(path, d, lim);
  const std::set<int64_t> want(indices.begin(), indices.end());
  const int64_t last = *want.rbegin();
  for_each_frame(path, d, [&](int64_t i, const AVFrame* f) {
    if (i > last) return false;
    if (want.count(i)) {
      if (int64_t(f->width) * f->height > lim.max_pixels) vfail(path, "decoded frame exceeds the decode limits");
      out.push_back(to_rgb(path, f));
    }
    return true;
  });
  for (const Image& f : out)
    if (f.width != out[0].width || f.height != out[0].height) vfail(path, "frame size changes mid-stream");
  return out;
}

ProcessedVideo preprocess_video_file(const std::filesystem::path& path, const VideoProcessorConfig& cfg,
                                     const DecodeLimits& lim) {
  const VideoFileInfo info = probe_video_file(path, lim);
  if (info.total_num_frames <= 0) vfail(path, "no video frames");
  std::vector<int64_t> idx;
  if (cfg.do_sample_frames) {
    idx = sample_frame_indices(info.total_num_frames, info.fps, cfg);
  } else {
    for (int64_t i = 0; i < info.total_num_frames; ++i) idx.push_back(i);
  }
  std::vector<Image> frames = decode_video_frames(path, idx, lim);
  if (frames.empty()) vfail(path, "no frames could be decoded");
  VideoProcessorConfig c2 = cfg;
  c2.do_sample_frames = false;  // frames are already the sampled ones
  ProcessedVideo r = preprocess_video(frames, info.fps, c2);
  r.frame_indices = idx;
  r.timestamps = video_timestamps(idx, info.fps.value_or(24.0), cfg.merge_size);
  return r;
}

}  // namespace qwen3vl

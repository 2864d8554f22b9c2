// Safetensors reader (mmap, strict validation, zero-copy views) and streaming writer.
#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <nlohmann/json.hpp>

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace qwen3vl {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;  // same limit as HF safetensors
constexpr int kMaxJsonDepth = 4;  // {"t": {"shape": [..]}} is depth 3

std::string where(const std::filesystem::path& path) { return "safetensors file '" + path.string() + "'"; }
std::string where(const std::filesystem::path& path, const std::string& tensor) {
  return where(path) + ", tensor '" + tensor + "'";
}

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& msg) {
  throw Error(where(path) + ": " + msg);
}
[[noreturn]] void fail(const std::filesystem::path& path, const std::string& tensor, const std::string& msg) {
  throw Error(where(path, tensor) + ": " + msg);
}

// Checked a * b for non-negative 64-bit values; false on overflow past int64 max.
bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) {
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (a != 0 && b > kMax / a) return false;
  *out = a * b;
  return true;
}

// Reads a JSON value that must be a non-negative integer that fits int64.
bool json_u63(const nlohmann::json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    *out = u;
    return true;
  }
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i < 0) return false;
    *out = static_cast<uint64_t>(i);
    return true;
  }
  return false;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

// ------------------------------------------------------------------------------------------------
// Reader
// ------------------------------------------------------------------------------------------------

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;

  Fd fd;
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd.fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) fail(path, std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8)
    fail(path, "file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");

  // Map the whole file read-only; nothing below touches the data block.
  void* m = ::mmap(nullptr, static_cast<size_t>(file_size), PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (m == MAP_FAILED) fail(path, std::string("mmap failed: ") + std::strerror(errno));
  f->map_ = m;
  f->map_size_ = static_cast<size_t>(file_size);
  const uint8_t* base = static_cast<const uint8_t*>(m);

  uint64_t header_len = 0;
  std::memcpy(&header_len, base, 8);  // little-endian host (static_assert above)
  if (header_len == 0) fail(path, "header length is 0");
  if (header_len > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(header_len) + " exceeds the 100 MB limit (not a safetensors file?)");
  if (header_len > file_size - 8)
    fail(path, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                   std::to_string(file_size) + " bytes; truncated?)");
  const char* hbeg = reinterpret_cast<const char*>(base + 8);
  const char* hend = hbeg + header_len;
  const uint64_t data_size = file_size - 8 - header_len;
  // nlohmann treats a NUL byte as end of input; valid JSON never contains a raw NUL.
  if (const void* nul = std::memchr(hbeg, 0, header_len))
    fail(path, "header is not valid JSON: NUL byte at header offset " +
                   std::to_string(static_cast<const char*>(nul) - hbeg));
  f->data_ = base + 8 + header_len;

  // Parse with a callback that rejects duplicate top-level keys and absurd nesting.
  nlohmann::json header;
  {
    std::set<std::string> seen;
    auto cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) -> bool {
      if (depth > kMaxJsonDepth) fail(path, "header JSON nested too deeply");
      if (ev == nlohmann::json::parse_event_t::key && depth == 1) {
        std::string k = parsed.get<std::string>();
        if (!seen.insert(k).second) fail(path, "header has duplicate key '" + k + "'");
      }
      return true;
    };
    try {
      header = nlohmann::json::parse(hbeg, hend, cb);
    } catch (const nlohmann::json::exception& e) {
      fail(path, std::string("header is not valid JSON: ") + e.what());
    }
  }
  if (!header.is_object()) fail(path, std::string("header JSON is not an object (got ") + header.type_name() + ")");

  try {
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const nlohmann::json& v = it.value();
      if (name == "__metadata__") {
        if (!v.is_object()) fail(path, "__metadata__ is not an object of strings");
        for (auto m2 = v.begin(); m2 != v.end(); ++m2) {
          if (!m2.value().is_string())
            fail(path, "__metadata__ value for key '" + m2.key() + "' is not a string (got " +
                           m2.value().type_name() + ")");
          f->metadata_[m2.key()] = m2.value().get<std::string>();
        }
        continue;
      }
      if (!v.is_object()) fail(path, name, "entry is not an object");
      TensorInfo ti;
      ti.name = name;
      // dtype
      auto d = v.find("dtype");
      if (d == v.end() || !d->is_string()) fail(path, name, "missing or non-string \"dtype\"");
      auto dt = dtype_from_name(d->get<std::string>());
      if (!dt) fail(path, name, "unknown or unsupported dtype '" + d->get<std::string>() + "'");
      ti.dtype = *dt;
      // shape
      auto s = v.find("shape");
      if (s == v.end() || !s->is_array()) fail(path, name, "missing \"shape\" or it is not a list");
      uint64_t numel = 1;
      ti.shape.reserve(s->size());
      for (const auto& dim : *s) {
        uint64_t u = 0;
        if (!json_u63(dim, &u)) fail(path, name, "shape " + s->dump() + " is not a list of non-negative integers");
        if (!mul_ok(numel, u, &numel)) fail(path, name, "shape " + s->dump() + " has too many elements (overflow)");
        ti.shape.push_back(static_cast<int64_t>(u));
      }
      uint64_t nbytes = 0;
      if (!mul_ok(numel, dtype_size(ti.dtype), &nbytes))
        fail(path, name, "shape " + s->dump() + " has too many bytes (overflow)");
      // data_offsets
      auto o = v.find("data_offsets");
      if (o == v.end() || !o->is_array() || o->size() != 2 || !json_u63((*o)[0], &ti.begin) ||
          !json_u63((*o)[1], &ti.end))
        fail(path, name, "\"data_offsets\" must be a list of two non-negative integers");
      if (ti.begin > ti.end)
        fail(path, name, "data_offsets " + o->dump() + ": begin is greater than end");
      if (ti.end > data_size)
        fail(path, name, "data_offsets " + o->dump() + " end beyond the data block (" + std::to_string(data_size) +
                             " bytes; file truncated?)");
      if (ti.end - ti.begin != nbytes)
        fail(path, name, "data_offsets " + o->dump() + " span " + std::to_string(ti.end - ti.begin) +
                             " bytes but " + dtype_name(ti.dtype) + shape_str(ti.shape) + " needs " +
                             std::to_string(nbytes));
      f->infos_.push_back(std::move(ti));
    }
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("malformed header: ") + e.what());
  }

  // Overlap check (empty tensors own no bytes).
  std::vector<const TensorInfo*> sorted;
  for (const auto& ti : f->infos_)
    if (ti.end > ti.begin) sorted.push_back(&ti);
  std::sort(sorted.begin(), sorted.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i]->begin < sorted[i - 1]->end)
      fail(path, sorted[i]->name,
           "data_offsets [" + std::to_string(sorted[i]->begin) + ", " + std::to_string(sorted[i]->end) +
               "] overlap tensor '" + sorted[i - 1]->name + "' [" + std::to_string(sorted[i - 1]->begin) + ", " +
               std::to_string(sorted[i - 1]->end) + "]");
  }

  // File order = data order (nlohmann sorts keys by name; HF writes in data order).
  std::stable_sort(f->infos_.begin(), f->infos_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 0; i < f->infos_.size(); ++i) f->index_[f->infos_[i].name] = i;
  return f;
}

bool SafetensorsFile::has(const std::string& name) const { return index_.count(name) != 0; }

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail(path_, name, "no such tensor in the file");
  return infos_[it->second];
}

Tensor SafetensorsFile::get(const std::string& name) const {
  const TensorInfo& ti = info(name);
  const uint8_t* p = data_ + ti.begin;
  const size_t align = dtype_size(ti.dtype);
  if (reinterpret_cast<uintptr_t>(p) % align != 0) {
    // Legal but misaligned placement (only possible in files not written by HF or us in
    // alignment-sorted order): return an aligned owned copy instead of a view.
    return Tensor::from_data(p, ti.shape, ti.dtype);
  }
  std::shared_ptr<const void> owner = shared_from_this();
  return Tensor::view(p, ti.shape, ti.dtype, std::move(owner));
}

void SafetensorsFile::release_pages(const void* p, size_t bytes) const {
  if (!map_ || !p || bytes == 0) return;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(map_), hi = lo + map_size_;
  uintptr_t b = reinterpret_cast<uintptr_t>(p), e = b + bytes;
  if (b < lo || e > hi) return;  // not (entirely) ours
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  b = (b + page - 1) / page * page;  // whole pages only: neighbours keep theirs
  e = e / page * page;
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

std::map<std::string, Tensor> load_safetensors(const std::filesystem::path& path) {
  auto f = SafetensorsFile::open(path);
  std::map<std::string, Tensor> out;
  for (const auto& ti : f->infos()) out[ti.name] = f->get(ti.name).clone();  // owned, writable
  return out;
}

// ------------------------------------------------------------------------------------------------
// Writer
// ------------------------------------------------------------------------------------------------

void SafetensorsWriter::add(const std::string& name, DType dtype, Shape shape) {
  QWEN3VL_CHECK(name != "__metadata__", "SafetensorsWriter: '__metadata__' is not a valid tensor name");
  for (const auto& ti : infos_)
    QWEN3VL_CHECK(ti.name != name, "SafetensorsWriter: tensor '" + name + "' declared twice");
  uint64_t numel = 1;
  for (int64_t d : shape) {
    QWEN3VL_CHECK(d >= 0, "SafetensorsWriter: tensor '" + name + "' has negative dimension in " + shape_str(shape));
    QWEN3VL_CHECK(mul_ok(numel, static_cast<uint64_t>(d), &numel),
                  "SafetensorsWriter: tensor '" + name + "' shape " + shape_str(shape) + " overflows");
  }
  uint64_t nbytes = 0;
  QWEN3VL_CHECK(mul_ok(numel, dtype_size(dtype), &nbytes),
                "SafetensorsWriter: tensor '" + name + "' shape " + shape_str(shape) + " overflows");
  const uint64_t begin = infos_.empty() ? 0 : infos_.back().end;
  uint64_t end = begin + nbytes;
  QWEN3VL_CHECK(end >= begin, "SafetensorsWriter: total size overflows");
  TensorInfo ti;
  ti.name = name;
  ti.dtype = dtype;
  ti.shape = std::move(shape);
  ti.begin = begin;
  ti.end = end;
  infos_.push_back(std::move(ti));
}

uint64_t SafetensorsWriter::data_bytes() const { return infos_.empty() ? 0 : infos_.back().end; }

void SafetensorsWriter::write(const std::filesystem::path& path,
                              const std::function<void(const TensorInfo&, const Sink&)>& produce) const {
  // Header: {"__metadata__": {...}, "<name>": {"dtype", "shape", "data_offsets"}, ...} in
  // declaration order, compact, padded with spaces to a multiple of 8 bytes (like HF).
  std::string header;
  try {
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    if (!metadata_.empty()) {
      nlohmann::ordered_json md = nlohmann::ordered_json::object();
      for (const auto& [k, v] : metadata_) md[k] = v;
      h["__metadata__"] = std::move(md);
    }
    for (const auto& ti : infos_) {
      nlohmann::ordered_json e = nlohmann::ordered_json::object();
      e["dtype"] = dtype_name(ti.dtype);
      e["shape"] = ti.shape;
      e["data_offsets"] = {ti.begin, ti.end};
      h[ti.name] = std::move(e);
    }
    header = h.dump();
  } catch (const nlohmann::json::exception& e) {
    throw Error(where(path) + ": cannot encode header (names and metadata must be valid UTF-8): " + e.what());
  }
  header.append((8 - header.size() % 8) % 8, ' ');
  QWEN3VL_CHECK(header.size() <= kMaxHeaderBytes, where(path) + ": header would exceed the 100 MB limit");

  // Write to a temporary next to the target and rename at the end, so a failed write never
  // leaves a plausible-looking partial file under the final name.
  std::filesystem::path tmp = path;
  tmp += ".partial";
  std::vector<char> iobuf(size_t{1} << 20);  // stdio buffer: bounded memory for small chunks
  std::FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp) throw Error(where(tmp) + ": cannot create: " + std::strerror(errno));
  struct Closer {
    std::FILE*& fp;
    const std::filesystem::path& tmp;
    bool done = false;
    ~Closer() {
      if (fp) std::fclose(fp);
      if (!done) {
        std::error_code ec;
        std::filesystem::remove(tmp, ec);
      }
    }
  } closer{fp, tmp};
  std::setvbuf(fp, iobuf.data(), _IOFBF, iobuf.size());

  auto put = [&](const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, fp) != n) throw Error(where(path) + ": write failed: " + std::strerror(errno));
  };
  const uint64_t hlen = header.size();
  put(&hlen, 8);
  put(header.data(), header.size());

  for (const auto& ti : infos_) {
    const uint64_t expected = ti.end - ti.begin;
    uint64_t written = 0;
    Sink sink = [&](const void* p, size_t n) {
      if (n > expected - written)
        throw Error(where(path, ti.name) + ": producer wrote more than the " + std::to_string(expected) +
                    " bytes of " + dtype_name(ti.dtype) + shape_str(ti.shape));
      put(p, n);
      written += n;
    };
    produce(ti, sink);
    if (written != expected)
      throw Error(where(path, ti.name) + ": producer wrote " + std::to_string(written) + " of " +
                  std::to_string(expected) + " bytes");
  }
  if (std::fflush(fp) != 0) throw Error(where(path) + ": write failed: " + std::strerror(errno));
  int rc = std::fclose(fp);
  fp = nullptr;
  if (rc != 0) throw Error(where(path) + ": close failed: " + std::strerror(errno));
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw Error(where(path) + ": cannot rename from '" + tmp.string() + "': " + ec.message());
  closer.done = true;
}

void save_safetensors(const std::filesystem::path& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Data in HF's order (safetensors' save_file): dtype rank descending, then name. Besides
  // byte-identical output to HF for the same input, this keeps every tensor aligned to its
  // element size (sizes are non-increasing along the file), so readers get zero-copy views.
  auto rank = [](DType t) {
    switch (t) {
      case DType::BOOL: return 0;
      case DType::U8: return 1;
      case DType::I8: return 2;
      case DType::I16: return 3;
      case DType::F16: return 4;
      case DType::BF16: return 5;
      case DType::I32: return 6;
      case DType::F32: return 7;
      case DType::F64: return 8;
      case DType::I64: return 9;
    }
    return 0;
  };
  std::vector<const std::pair<const std::string, Tensor>*> order;
  for (const auto& kv : tensors) {
    QWEN3VL_CHECK(kv.second.defined(), where(path, kv.first) + ": cannot save an undefined tensor");
    order.push_back(&kv);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](const auto* a, const auto* b) { return rank(a->second.dtype()) > rank(b->second.dtype()); });
  SafetensorsWriter w;
  for (const auto* kv : order) w.add(kv->first, kv->second.dtype(), kv->second.shape());
  w.set_metadata(metadata);
  w.write(path, [&](const TensorInfo& ti, const SafetensorsWriter::Sink& sink) {
    const Tensor& t = tensors.at(ti.name);
    sink(t.raw(), t.nbytes());
  });
}

}  // namespace qwen3vl

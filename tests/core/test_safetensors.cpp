// Safetensors reader/writer: round trips, HF (Python) compatibility, strict validation of
// damaged files, streaming writes, zero-copy views.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "common/compare.h"
#include "common/files.h"
#include "core/safetensors.h"

namespace qwen3vl {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test (tests run as separate processes under ctest).
fs::path test_dir() { return test::scratch_dir("core"); }
using test::read_bytes;
using test::write_bytes;

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  std::memcpy(s.data(), &v, 8);
  return s;
}

// A raw file: 8-byte length of `header`, the header, `data_bytes` bytes of data.
fs::path raw_file(const fs::path& dir, const std::string& name, const std::string& header, size_t data_bytes) {
  fs::path p = dir / name;
  write_bytes(p, le64(header.size()) + header + std::string(data_bytes, '\x11'));
  return p;
}

// Asserts open() throws an Error whose message contains the file path and every `needles`.
void expect_open_error(const fs::path& p, std::vector<std::string> needles) {
  try {
    auto f = SafetensorsFile::open(p);
    ADD_FAILURE() << "open(" << p << ") did not throw";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(p.string()), std::string::npos) << "message does not name the file: " << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "message lacks '" << n << "': " << msg;
    std::printf("[error] %s\n", msg.c_str());
  } catch (const std::exception& e) {
    ADD_FAILURE() << "open(" << p << ") threw a non-Error exception: " << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

TEST(Safetensors, RoundTripAllDtypesAndMetadata) {
  fs::path dir = test_dir();
  std::map<std::string, Tensor> in;
  in["f32"] = Tensor::from_vector<float>({1.5f, -2.25f, 0.0f, 1e-30f, 3e38f, -0.0f}, {2, 3});
  std::vector<uint16_t> bf = {0x3f80, 0xc020, 0x7f80, 0x0001};
  in["bf16"] = Tensor::from_data(bf.data(), {4}, DType::BF16);
  std::vector<uint16_t> h = {0x0001, 0x03ff, 0x7bff, 0xb800, 0x3c00};
  in["f16"] = Tensor::from_data(h.data(), {5, 1}, DType::F16);
  in["i64"] = Tensor::from_vector<int64_t>({std::numeric_limits<int64_t>::min(), -1, 0, (int64_t{1} << 53) + 1}, {2, 2});
  in["i32"] = Tensor::from_vector<int32_t>({std::numeric_limits<int32_t>::min(), 7, std::numeric_limits<int32_t>::max()}, {3});
  in["u8"] = Tensor::from_vector<uint8_t>({0, 1, 127, 128, 255}, {5});
  in["zero"] = Tensor::zeros({0, 4}, DType::F32);
  in["zero_bf16"] = Tensor::zeros({3, 0}, DType::BF16);
  in["scalar"] = Tensor::from_vector<float>({42.0f}, {});
  std::map<std::string, std::string> md = {{"make_model_args", "--preset tiny --seed 0"}, {"empty", ""},
                                           {"unicode", "h\xc3\xa9llo \xe2\x9c\x93"}, {"quote", "a \"b\" \\ c\n"}};
  fs::path p = dir / "rt.safetensors";
  save_safetensors(p, in, md);

  // HF layout: header length is a multiple of 8 and padded with spaces.
  std::string bytes = read_bytes(p);
  uint64_t hl;
  std::memcpy(&hl, bytes.data(), 8);
  EXPECT_EQ(hl % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
  EXPECT_EQ(bytes.size(), 8 + hl + (4 * 6 + 2 * 4 + 2 * 5 + 8 * 4 + 4 * 3 + 5 + 4));

  auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->metadata(), md);
  ASSERT_EQ(f->infos().size(), in.size());
  for (const auto& [name, t] : in) {
    ASSERT_TRUE(f->has(name)) << name;
    Tensor got = f->get(name);
    EXPECT_EQ(got.dtype(), t.dtype()) << name;
    EXPECT_EQ(got.shape(), t.shape()) << name;
    ASSERT_EQ(got.nbytes(), t.nbytes()) << name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(got.raw()) % dtype_size(t.dtype()), 0u) << name;
    if (t.nbytes()) {
      EXPECT_EQ(std::memcmp(got.raw(), t.raw(), t.nbytes()), 0) << name;
    }
  }
  EXPECT_EQ(f->get("i64").data<int64_t>()[3], (int64_t{1} << 53) + 1);
  EXPECT_EQ(f->get("scalar").item(0), 42.0);

  // load_safetensors returns owned, writable copies.
  auto loaded = load_safetensors(p);
  ASSERT_EQ(loaded.size(), in.size());
  loaded["f32"].data<float>()[0] = 9.0f;
  EXPECT_EQ(loaded["f32"].item(0), 9.0);
  EXPECT_EQ(f->get("f32").item(0), 1.5);
  test::expect_equal("u8", loaded["u8"], in["u8"]);
}

TEST(Safetensors, EmptyFileRoundTrip) {
  fs::path dir = test_dir();
  fs::path p = dir / "empty.safetensors";
  save_safetensors(p, {});
  auto f = SafetensorsFile::open(p);
  EXPECT_TRUE(f->infos().empty());
  EXPECT_TRUE(f->metadata().empty());
  EXPECT_EQ(read_bytes(p), le64(8) + "{}      ");
}

TEST(Safetensors, ViewsAreZeroCopyAndKeepTheMappingAlive) {
  fs::path dir = test_dir();
  fs::path p = dir / "v.safetensors";
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.5f;
  save_safetensors(p, {{"w", Tensor::from_vector(v, {10, 100})}});
  Tensor a;
  {
    auto f = SafetensorsFile::open(p);
    a = f->get("w");
    Tensor b = f->get("w");
    EXPECT_EQ(a.raw(), b.raw());  // same bytes of the mapping, no copy
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.raw()) % 4, 0u);
  }  // file object released; the view must keep the mapping alive
  fs::remove(p);
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(a.data<float>()[i], v[i]) << i;
  Tensor rows = a.slice_rows(3, 5);
  EXPECT_EQ(rows.item(0), 150.0);
}

TEST(Safetensors, InfoAndGetOfMissingTensorNameFileAndTensor) {
  fs::path dir = test_dir();
  fs::path p = dir / "m.safetensors";
  save_safetensors(p, {{"a", Tensor::zeros({2})}});
  auto f = SafetensorsFile::open(p);
  EXPECT_FALSE(f->has("nope"));
  try {
    f->get("nope");
    ADD_FAILURE() << "get of a missing tensor did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'nope'"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, MisalignedTensorIsReturnedAsAlignedCopy) {
  // Legal file where an F32 tensor starts at data offset 1 (after a 1-byte U8 tensor).
  fs::path dir = test_dir();
  std::string header =
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  float vals[2] = {1.25f, -3.5f};
  std::string data(1, '\x07');
  data.append(reinterpret_cast<const char*>(vals), 8);
  fs::path p = dir / "mis.safetensors";
  write_bytes(p, le64(header.size()) + header + data);
  auto f = SafetensorsFile::open(p);
  Tensor b = f->get("b");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.raw()) % 4, 0u);
  EXPECT_EQ(b.item(0), 1.25);
  EXPECT_EQ(b.item(1), -3.5);
  EXPECT_EQ(f->get("a").item(0), 7.0);
  // infos() are in data order.
  ASSERT_EQ(f->infos().size(), 2u);
  EXPECT_EQ(f->infos()[0].name, "a");
  EXPECT_EQ(f->infos()[1].name, "b");
}

// ---------------------------------------------------------------------------------------------
// Streaming writer
// ---------------------------------------------------------------------------------------------

TEST(Safetensors, StreamingWriterWritesChunksInDeclarationOrder) {
  fs::path dir = test_dir();
  SafetensorsWriter w;
  w.add("z_first", DType::F32, {3, 1000});
  w.add("a_second", DType::BF16, {7});
  w.add("empty", DType::I64, {0});
  w.add("c_third", DType::U8, {5});
  w.set_metadata({{"k", "v"}});
  EXPECT_EQ(w.data_bytes(), 12000u + 14u + 5u);
  ASSERT_EQ(w.infos().size(), 4u);
  EXPECT_EQ(w.infos()[1].begin, 12000u);
  EXPECT_EQ(w.infos()[1].end, 12014u);
  std::vector<std::string> order;
  fs::path p = dir / "s.safetensors";
  w.write(p, [&](const TensorInfo& ti, const SafetensorsWriter::Sink& sink) {
    order.push_back(ti.name);
    if (ti.dtype == DType::F32) {
      // Row by row, like a generator that never holds the tensor.
      for (int r = 0; r < 3; ++r) {
        std::vector<float> row(1000);
        for (int c = 0; c < 1000; ++c) row[c] = static_cast<float>(r * 1000 + c);
        sink(row.data(), row.size() * 4);
      }
    } else if (ti.dtype == DType::BF16) {
      for (int i = 0; i < 7; ++i) {
        uint16_t b = f32_to_bf16(static_cast<float>(i));
        sink(&b, 2);
      }
    } else if (ti.dtype == DType::U8) {
      const uint8_t b[5] = {9, 8, 7, 6, 5};
      sink(b, 2);
      sink(b + 2, 0);
      sink(b + 2, 3);
    }
  });
  EXPECT_EQ(order, (std::vector<std::string>{"z_first", "a_second", "empty", "c_third"}));
  EXPECT_FALSE(fs::exists(dir / "s.safetensors.partial"));
  auto f = SafetensorsFile::open(p);
  ASSERT_EQ(f->infos().size(), 4u);
  EXPECT_EQ(f->infos()[0].name, "z_first");  // data order
  EXPECT_EQ(f->get("z_first").item(2999), 2999.0);
  EXPECT_EQ(f->get("a_second").item(6), 6.0);
  EXPECT_EQ(f->get("c_third").item(4), 5.0);
  EXPECT_EQ(f->get("empty").numel(), 0);
  EXPECT_EQ(f->metadata().at("k"), "v");
}

TEST(Safetensors, StreamingWriterRejectsWrongByteCountsAndLeavesNoFile) {
  fs::path dir = test_dir();
  SafetensorsWriter w;
  w.add("t", DType::F32, {4});
  fs::path p = dir / "bad.safetensors";
  std::vector<float> buf(5, 1.0f);
  // Too few bytes.
  try {
    w.write(p, [&](const TensorInfo&, const SafetensorsWriter::Sink& sink) { sink(buf.data(), 12); });
    ADD_FAILURE() << "short producer accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'t'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("12 of 16"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(p));
  EXPECT_FALSE(fs::exists(dir / "bad.safetensors.partial"));
  // Too many bytes.
  EXPECT_THROW(w.write(p, [&](const TensorInfo&, const SafetensorsWriter::Sink& sink) { sink(buf.data(), 20); }),
               Error);
  EXPECT_FALSE(fs::exists(p));
  // A producer that throws: its error propagates, nothing is left behind.
  EXPECT_THROW(w.write(p, [&](const TensorInfo&, const SafetensorsWriter::Sink&) { throw Error("boom"); }), Error);
  EXPECT_FALSE(fs::exists(p));
  EXPECT_FALSE(fs::exists(dir / "bad.safetensors.partial"));
  // An existing good file is not clobbered by a failed write.
  save_safetensors(p, {{"old", Tensor::zeros({1})}});
  EXPECT_THROW(w.write(p, [&](const TensorInfo&, const SafetensorsWriter::Sink& sink) { sink(buf.data(), 4); }),
               Error);
  EXPECT_TRUE(SafetensorsFile::open(p)->has("old"));
}

TEST(Safetensors, WriterRejectsBadDeclarations) {
  SafetensorsWriter w;
  w.add("a", DType::F32, {2});
  EXPECT_THROW(w.add("a", DType::F32, {2}), Error);
  EXPECT_THROW(w.add("__metadata__", DType::F32, {2}), Error);
  EXPECT_THROW(w.add("neg", DType::F32, {-1, 2}), Error);
  EXPECT_THROW(w.add("huge", DType::F32, {int64_t{1} << 40, int64_t{1} << 40}), Error);
  EXPECT_EQ(w.infos().size(), 1u);
  fs::path dir = test_dir();
  EXPECT_THROW(save_safetensors(dir / "u.safetensors", {{"undef", Tensor()}}), Error);
  // Metadata that is not UTF-8 cannot be encoded in JSON.
  EXPECT_THROW(save_safetensors(dir / "md.safetensors", {}, {{"k", "\xff\xfe"}}), Error);
}

// ---------------------------------------------------------------------------------------------
// Compatibility with HF's Python safetensors (fixture made by tools/reference/make_core_fixture.py)
// ---------------------------------------------------------------------------------------------

fs::path python_fixture() { return test::fixtures_dir() / "core" / "python_made.safetensors"; }

TEST(Safetensors, PythonMadeFixtureValues) {
  auto f = SafetensorsFile::open(python_fixture());
  EXPECT_EQ(f->metadata().size(), 1u);
  EXPECT_EQ(f->metadata().at("note"), "made by python safetensors: h\xc3\xa9llo \xe2\x9c\x93");

  Tensor f32 = f->get("f32");
  ASSERT_EQ(f32.str(), "F32[2, 3]");
  const float ef32[6] = {-1.5f, 0.0f, 0.25f, 3.0e-38f, 1.0e10f, -7.0f};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(f32.data<float>()[i], ef32[i]) << i;

  Tensor bf16 = f->get("bf16");
  ASSERT_EQ(bf16.str(), "BF16[4]");
  const uint16_t ebf[4] = {0x3f80, 0xc020, 0x3c00, f32_to_bf16(3.0e38f)};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(bf16.data_u16()[i], ebf[i]) << i;
  EXPECT_EQ(ebf[3], 0x7f62);  // torch's rounding of 3e38

  Tensor f16 = f->get("f16");
  ASSERT_EQ(f16.str(), "F16[5]");
  const double ef16[5] = {std::ldexp(1.0, -24), 1023 * std::ldexp(1.0, -24), 65504.0, -0.5, 1.0};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f16.item(i), ef16[i]) << i;

  Tensor i64 = f->get("i64");
  ASSERT_EQ(i64.str(), "I64[2, 2]");
  const int64_t ei64[4] = {-1, int64_t{1} << 40, 0, (int64_t{1} << 53) + 1};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(i64.data<int64_t>()[i], ei64[i]) << i;

  Tensor i32 = f->get("i32");
  ASSERT_EQ(i32.str(), "I32[3]");
  EXPECT_EQ(i32.data<int32_t>()[0], std::numeric_limits<int32_t>::min());
  EXPECT_EQ(i32.data<int32_t>()[2], std::numeric_limits<int32_t>::max());

  Tensor u8 = f->get("u8");
  ASSERT_EQ(u8.str(), "U8[4]");
  EXPECT_EQ(u8.data<uint8_t>()[2], 128);
  EXPECT_EQ(u8.data<uint8_t>()[3], 255);

  EXPECT_EQ(f->get("empty").str(), "F32[0, 3]");
}

TEST(Safetensors, WriterReproducesPythonFileByteForByte) {
  // Declaring the same tensors in the same (data) order with the same metadata must give the
  // exact bytes HF's Rust writer produced: same compact JSON, same space padding, same layout.
  fs::path dir = test_dir();
  auto f = SafetensorsFile::open(python_fixture());
  SafetensorsWriter w;
  for (const auto& ti : f->infos()) w.add(ti.name, ti.dtype, ti.shape);
  w.set_metadata(f->metadata());
  fs::path p = dir / "ours.safetensors";
  w.write(p, [&](const TensorInfo& ti, const SafetensorsWriter::Sink& sink) {
    Tensor t = f->get(ti.name);
    sink(t.raw(), t.nbytes());
  });
  std::string ours = read_bytes(p), theirs = read_bytes(python_fixture());
  ASSERT_EQ(ours.size(), theirs.size());
  EXPECT_TRUE(ours == theirs) << "ours:\n" << ours.substr(8, 200) << "\ntheirs:\n" << theirs.substr(8, 200);

  // save_safetensors (map input, any order) uses HF's data order: same bytes again.
  fs::path q = dir / "saved.safetensors";
  save_safetensors(q, load_safetensors(python_fixture()), f->metadata());
  EXPECT_TRUE(read_bytes(q) == theirs);
}

// ---------------------------------------------------------------------------------------------
// Damaged files: each must throw Error naming the file (and the tensor where there is one).
// ---------------------------------------------------------------------------------------------

TEST(SafetensorsDamage, MissingFile) { expect_open_error(test_dir() / "does_not_exist.safetensors", {"cannot open"}); }

TEST(SafetensorsDamage, Directory) {
  fs::path d = test_dir() / "dir.safetensors";
  fs::create_directories(d);
  expect_open_error(d, {"not a regular file"});
}

TEST(SafetensorsDamage, ShorterThan8Bytes) {
  fs::path dir = test_dir();
  fs::path p = dir / "short.safetensors";
  write_bytes(p, std::string("\x05\x00\x00", 3));
  expect_open_error(p, {"3 bytes"});
  fs::path e = dir / "zero_bytes.safetensors";
  write_bytes(e, "");
  expect_open_error(e, {"0 bytes"});
}

TEST(SafetensorsDamage, HeaderLengthZero) {
  fs::path p = test_dir() / "hl0.safetensors";
  write_bytes(p, le64(0) + "{}");
  expect_open_error(p, {"header length is 0"});
}

TEST(SafetensorsDamage, HeaderLengthOver100MB) {
  fs::path p = test_dir() / "hlbig.safetensors";
  write_bytes(p, le64(100'000'001) + "{}");
  expect_open_error(p, {"100 MB"});
  fs::path q = test_dir() / "hlmax.safetensors";
  write_bytes(q, le64(std::numeric_limits<uint64_t>::max()) + "{}");
  expect_open_error(q, {"100 MB"});
}

TEST(SafetensorsDamage, HeaderLengthPastEndOfFile) {
  fs::path p = test_dir() / "hlpast.safetensors";
  write_bytes(p, le64(64) + "{}");
  expect_open_error(p, {"past the end"});
}

TEST(SafetensorsDamage, HeaderNotJson) {
  fs::path dir = test_dir();
  expect_open_error(raw_file(dir, "garbage.safetensors", "{\"a\": {\"dtype\": ", 0), {"not valid JSON"});
  expect_open_error(raw_file(dir, "trailing.safetensors", "{} x", 0), {"not valid JSON"});
  // nlohmann stops at a NUL byte; the reader must still reject NUL padding / trailing garbage.
  expect_open_error(raw_file(dir, "nul.safetensors", std::string("{}\0\0", 4), 0), {"NUL"});
  expect_open_error(raw_file(dir, "nul2.safetensors", std::string("{}\0garbage", 10), 0), {"NUL"});
  expect_open_error(raw_file(dir, "utf8.safetensors", "{\"\xff\":1}", 0), {"not valid JSON"});
}

TEST(SafetensorsDamage, HeaderNotAnObject) {
  fs::path dir = test_dir();
  expect_open_error(raw_file(dir, "array.safetensors", "[1, 2]", 0), {"not an object"});
  expect_open_error(raw_file(dir, "number.safetensors", "12345678", 0), {"not an object"});
}

TEST(SafetensorsDamage, DuplicateKey) {
  fs::path p = raw_file(test_dir(), "dup.safetensors",
                        R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", 2);
  expect_open_error(p, {"duplicate", "'w'"});
}

TEST(SafetensorsDamage, NestingTooDeep) {
  std::string h = "{\"__metadata__\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  expect_open_error(raw_file(test_dir(), "deep.safetensors", h, 0), {"nested too deeply"});
}

TEST(SafetensorsDamage, EntryNotAnObject) {
  expect_open_error(raw_file(test_dir(), "entry.safetensors", R"({"w": [1,2]})", 0), {"'w'", "not an object"});
}

TEST(SafetensorsDamage, UnknownDtype) {
  fs::path dir = test_dir();
  expect_open_error(raw_file(dir, "q4.safetensors", R"({"w.q":{"dtype":"Q4","shape":[2],"data_offsets":[0,1]}})", 1),
                    {"'w.q'", "dtype 'Q4'"});
  expect_open_error(raw_file(dir, "f8.safetensors", R"({"w8":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2),
                    {"'w8'", "F8_E4M3"});
  expect_open_error(raw_file(dir, "num.safetensors", R"({"wn":{"dtype":3,"shape":[2],"data_offsets":[0,2]}})", 2),
                    {"'wn'", "dtype"});
  expect_open_error(raw_file(dir, "nodtype.safetensors", R"({"wm":{"shape":[2],"data_offsets":[0,2]}})", 2),
                    {"'wm'", "dtype"});
}

TEST(SafetensorsDamage, BadShape) {
  fs::path dir = test_dir();
  const char* cases[] = {
      R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})",
      R"({"w":{"dtype":"U8","shape":[2.0],"data_offsets":[0,2]}})",
      R"({"w":{"dtype":"U8","shape":["2"],"data_offsets":[0,2]}})",
      R"({"w":{"dtype":"U8","shape":2,"data_offsets":[0,2]}})",
      R"({"w":{"dtype":"U8","shape":[[2]],"data_offsets":[0,2]}})",
      R"({"w":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,2]}})",
      R"({"w":{"dtype":"U8","data_offsets":[0,2]}})",
  };
  int i = 0;
  for (const char* h : cases)
    expect_open_error(raw_file(dir, "shape" + std::to_string(i++) + ".safetensors", h, 2), {"'w'", "shape"});
}

TEST(SafetensorsDamage, NumelOverflow) {
  fs::path dir = test_dir();
  // 2^32 * 2^32 elements overflows 64 bits; 2^62 F32 elements overflow the byte count.
  expect_open_error(raw_file(dir, "ov1.safetensors",
                             R"({"huge":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,16]}})", 16),
                    {"'huge'", "overflow"});
  expect_open_error(raw_file(dir, "ov2.safetensors",
                             R"({"huge":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,16]}})", 16),
                    {"'huge'", "overflow"});
}

TEST(SafetensorsDamage, MalformedDataOffsets) {
  fs::path dir = test_dir();
  const char* cases[] = {
      R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0]}})",
      R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2,4]}})",
      R"({"w":{"dtype":"U8","shape":[2],"data_offsets":["0","2"]}})",
      R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[-2,0]}})",
      R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0.5,2]}})",
      R"({"w":{"dtype":"U8","shape":[2],"data_offsets":{"a":0}}})",
      R"({"w":{"dtype":"U8","shape":[2]}})",
  };
  int i = 0;
  for (const char* h : cases)
    expect_open_error(raw_file(dir, "off" + std::to_string(i++) + ".safetensors", h, 4), {"'w'", "data_offsets"});
}

TEST(SafetensorsDamage, BeginGreaterThanEnd) {
  expect_open_error(raw_file(test_dir(), "rev.safetensors", R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[4,2]}})", 4),
                    {"'w'", "begin is greater than end"});
}

TEST(SafetensorsDamage, EndBeyondDataBlock) {
  expect_open_error(raw_file(test_dir(), "beyond.safetensors",
                             R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 12),
                    {"'w'", "beyond the data block"});
  expect_open_error(raw_file(test_dir(), "beyond2.safetensors",
                             R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]}})", 0),
                    {"'w'", "data_offsets"});
}

TEST(SafetensorsDamage, SizeMismatch) {
  expect_open_error(raw_file(test_dir(), "size.safetensors",
                             R"({"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,8]}})", 16),
                    {"'w'", "span 8 bytes", "needs 12"});
}

TEST(SafetensorsDamage, OverlappingTensors) {
  fs::path dir = test_dir();
  expect_open_error(raw_file(dir, "overlap.safetensors",
                             R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
                    {"'b'", "overlap", "'a'"});
  // Same range twice, declared in reverse name order.
  expect_open_error(raw_file(dir, "same.safetensors",
                             R"({"z":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                             R"("y":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})", 4),
                    {"overlap"});
  // Zero-size tensors own no bytes and may sit anywhere inside the block.
  fs::path ok = raw_file(dir, "empty_inside.safetensors",
                         R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", 8);
  EXPECT_NO_THROW(SafetensorsFile::open(ok));
}

TEST(SafetensorsDamage, BadMetadata) {
  fs::path dir = test_dir();
  expect_open_error(raw_file(dir, "mdnum.safetensors", R"({"__metadata__":{"seed":0}})", 0), {"__metadata__", "'seed'"});
  expect_open_error(raw_file(dir, "mdnull.safetensors", R"({"__metadata__":{"x":null}})", 0), {"__metadata__", "'x'"});
  expect_open_error(raw_file(dir, "mdarr.safetensors", R"({"__metadata__":["a"]})", 0), {"__metadata__"});
}

TEST(SafetensorsDamage, TruncatedDataBlock) {
  fs::path dir = test_dir();
  fs::path p = dir / "trunc.safetensors";
  std::vector<float> v(256, 1.0f);
  save_safetensors(p, {{"a.weight", Tensor::from_vector(v, {16, 16})}, {"b.weight", Tensor::from_vector(v, {256})}});
  ASSERT_NO_THROW(SafetensorsFile::open(p));
  fs::resize_file(p, fs::file_size(p) - 100);  // cut into the last tensor
  expect_open_error(p, {"'b.weight'", "beyond the data block"});
  // Cut into the header itself.
  fs::resize_file(p, 40);
  expect_open_error(p, {"past the end"});
}

TEST(SafetensorsDamage, EveryTruncationOfAValidFileIsRejectedCleanly) {
  // Cutting a valid file at any byte must give an Error (never a crash or a silent success).
  fs::path dir = test_dir();
  fs::path src = dir / "src.safetensors";
  save_safetensors(src, {{"x", Tensor::from_vector<float>({1, 2, 3}, {3})}, {"y", Tensor::from_vector<int64_t>({4}, {1})}},
                   {{"k", "v"}});
  std::string full = read_bytes(src);
  fs::path p = dir / "cut.safetensors";
  for (size_t n = 0; n < full.size(); ++n) {
    write_bytes(p, full.substr(0, n));
    EXPECT_THROW(SafetensorsFile::open(p), Error) << "cut at " << n << " of " << full.size();
  }
}

// ---------------------------------------------------------------------------------------------
// Performance properties
// ---------------------------------------------------------------------------------------------

TEST(Safetensors, OpenDoesNotReadTheDataBlock) {
  // A sparse 16 GiB file: open() + get() must only map it (reading it would take minutes and
  // fail on most disks), and the view must point into the mapping.
  fs::path dir = test_dir();
  fs::path p = dir / "sparse.safetensors";
  const uint64_t n = uint64_t{1} << 32;  // F32 elements -> 16 GiB
  std::string header = R"({"big":{"dtype":"F32","shape":[)" + std::to_string(n) + R"(],"data_offsets":[0,)" +
                       std::to_string(n * 4) + "]}}";
  header.append((8 - header.size() % 8) % 8, ' ');
  write_bytes(p, le64(header.size()) + header);
  std::error_code ec;
  fs::resize_file(p, 8 + header.size() + n * 4, ec);
  if (ec) GTEST_SKIP() << "file system cannot hold a sparse 16 GiB file: " << ec.message();
  auto t0 = std::chrono::steady_clock::now();
  auto f = SafetensorsFile::open(p);
  Tensor big = f->get("big");
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(big.numel(), static_cast<int64_t>(n));
  EXPECT_EQ(big.data<float>()[n - 1], 0.0f);  // touches one page only
  EXPECT_LT(ms, 2000.0);
  std::printf("[perf] open+get of a 16 GiB sparse file: %.2f ms\n", ms);
  big = Tensor();
  f.reset();
  fs::remove(p);
}

}  // namespace
}  // namespace qwen3vl

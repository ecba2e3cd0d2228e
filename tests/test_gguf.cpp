// GGUF reader and writer: a round trip of every metadata value type and every tensor type gives
// identical metadata and bytes; hostile files (bad magic, truncation at every byte, counts past
// the end, absurd array lengths, unknown types, misaligned or out-of-file tensors, random byte
// flips) are refused with a distill::Error naming the problem — never a crash (run under ASan too).
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "test_util.h"

#include <cstring>

namespace distill {

using test::TempDir;

namespace {

struct Written {
  std::vector<std::pair<std::string, GgufValue>> kv;
  std::vector<std::tuple<std::string, DType, Shape, std::vector<uint8_t>>> tensors;
};

Written sample(GgufWriter& w) {
  Written x;
  auto add = [&](const std::string& k, GgufValue v) {
    w.set(k, v);
    x.kv.emplace_back(k, v);
  };
  GgufValue v;
  add("general.architecture", GgufValue::of_string("llama"));
  add("t.u8", [] { GgufValue v; v.type = GgufType::U8, v.u = 200; return v; }());
  add("t.i8", [] { GgufValue v; v.type = GgufType::I8, v.i = -100; return v; }());
  add("t.u16", [] { GgufValue v; v.type = GgufType::U16, v.u = 60000; return v; }());
  add("t.i16", [] { GgufValue v; v.type = GgufType::I16, v.i = -30000; return v; }());
  add("t.u32", GgufValue::of_u32(4000000000u));
  add("t.i32", GgufValue::of_i32(-2000000000));
  add("t.f32", GgufValue::of_f32(0.25f));
  add("t.bool", GgufValue::of_bool(true));
  add("t.string", GgufValue::of_string(std::string("with\0zero and ünïcode", 22)));
  add("t.u64", GgufValue::of_u64(uint64_t(1) << 60));
  add("t.i64", [] { GgufValue v; v.type = GgufType::I64, v.i = -(int64_t(1) << 60); return v; }());
  add("t.f64", [] { GgufValue v; v.type = GgufType::F64, v.f = 1e-300; return v; }());
  add("t.strings", GgufValue::of_strings({"a", "", "ccc"}));
  add("t.ints", GgufValue::of_array(GgufType::I32, {GgufValue::of_i32(1), GgufValue::of_i32(-2)}));
  add("t.empty", GgufValue::of_array(GgufType::F32, {}));
  add("t.nested", GgufValue::of_array(GgufType::Array, {GgufValue::of_strings({"x"}), GgufValue::of_strings({"y", "z"})}));
  const std::pair<DType, Shape> shapes[] = {{DType::F32, {3, 5}}, {DType::F16, {7}}, {DType::BF16, {2, 3, 4}},
                                            {DType::Q8_0, {3, 64}}, {DType::Q4_0, {5, 32}}, {DType::Q4_K, {2, 256}},
                                            {DType::Q5_K, {1, 512}}, {DType::Q6_K, {3, 256}}, {DType::MXFP4, {2, 64}}};
  int i = 0;
  for (const auto& [dt, shape] : shapes) {
    const int64_t n = shape_numel(shape);
    const auto f = test::random_vector(size_t(n), uint64_t(100 + i), 1.0f);
    std::vector<uint8_t> bytes(dtype_bytes(dt, n));
    ref::quantize_row(bytes.data(), dt, f.data(), n);
    const std::string name = fmt::format("blk.{}.{}", i++, dtype_name(dt));
    w.add_tensor(name, dt, shape, bytes.data(), bytes.size());
    x.tensors.emplace_back(name, dt, shape, bytes);
  }
  return x;
}

// A distill::Error, not a crash; returns its message.
std::string open_error(const std::string& path) {
  try {
    GgufFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Gguf, RoundTripEveryValueAndTensorType) {
  TempDir dir;
  for (size_t alignment : {32, 64}) {
    GgufWriter w;
    const Written x = sample(w);
    const std::string path = dir / fmt::format("a{}.gguf", alignment);
    w.write(path, alignment);
    const GgufFile g = GgufFile::open(path);
    EXPECT_EQ(g.version(), 3u);
    EXPECT_EQ(g.alignment(), alignment);
    size_t k = 0;
    for (const auto& [key, v] : x.kv) {
      ASSERT_NE(g.find(key), nullptr) << key;
      EXPECT_TRUE(*g.find(key) == v) << key;
      EXPECT_EQ(g.metadata()[k++].first, key) << "order kept";
    }
    EXPECT_EQ(g.get_string("t.string"), std::string("with\0zero and ünïcode", 22));
    EXPECT_EQ(g.get_int("t.i64"), -(int64_t(1) << 60));
    ASSERT_EQ(g.tensors().size(), x.tensors.size());
    for (const auto& [name, dt, shape, bytes] : x.tensors) {
      const GgufTensorInfo* info = g.find_tensor(name);
      ASSERT_NE(info, nullptr) << name;
      EXPECT_EQ(info->dtype, dt);
      EXPECT_EQ(info->shape, shape);
      const Tensor t = g.tensor(*info);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % alignment, 0u) << "tensor data aligned in the file";
      ASSERT_EQ(t.nbytes(), bytes.size());
      EXPECT_EQ(std::memcmp(t.raw(), bytes.data(), bytes.size()), 0) << name;
    }
  }
}

TEST(Gguf, HostileFilesAreRefusedWithAMessage) {
  TempDir dir;
  GgufWriter w;
  sample(w);
  const std::string good = dir / "good.gguf";
  w.write(good);
  const std::string bytes = test::read_bytes(good);
  auto variant = [&](const std::string& name, std::string b) {
    const std::string p = dir / name;
    test::write_bytes(p, b);
    return open_error(p);
  };
  auto put_u64 = [](std::string& b, size_t at, uint64_t v) { std::memcpy(&b[at], &v, 8); };
  auto put_u32 = [](std::string& b, size_t at, uint32_t v) { std::memcpy(&b[at], &v, 4); };

  EXPECT_NE(variant("magic", "GGUX" + bytes.substr(4)).find("bad magic"), std::string::npos);
  std::string b = bytes;
  put_u32(b, 4, 1);
  EXPECT_NE(variant("v1", b).find("version 1"), std::string::npos);
  b = bytes;
  put_u64(b, 16, uint64_t(1) << 50);  // metadata count
  EXPECT_NE(variant("kv", b).find("cannot fit"), std::string::npos);
  b = bytes;
  put_u64(b, 8, uint64_t(1) << 40);  // tensor count
  EXPECT_NE(variant("nt", b).find("cannot fit"), std::string::npos);
  b = bytes;
  put_u64(b, 24, uint64_t(1) << 62);  // length of the first key
  EXPECT_NE(variant("keylen", b).find("past the end"), std::string::npos);
  // first value type (after the key "general.architecture", 20 bytes) -> 99
  b = bytes;
  put_u32(b, 24 + 8 + 20, 99);
  EXPECT_NE(variant("vtype", b).find("unknown value type 99"), std::string::npos);
  // an absurd array length: find "t.strings"' count
  b = bytes;
  const size_t at = b.find("t.strings") + 9 + 4 + 4;  // key, type (array), element type
  put_u64(b, at, uint64_t(1) << 61);
  EXPECT_NE(variant("arr", b).find("cannot fit"), std::string::npos);
  // tensor infos: type, offset and dimension count of the first tensor
  const size_t t0 = b.find("blk.0.F32");
  b = bytes;
  put_u32(b, t0 + 9 + 4 + 16, 3);  // ggml type 3 = Q4_1
  EXPECT_NE(variant("ttype", b).find("Q4_1"), std::string::npos);
  b = bytes;
  put_u64(b, t0 + 9 + 4 + 16 + 4, 7);  // offset not a multiple of 32
  EXPECT_NE(variant("align", b).find("not a multiple of the alignment"), std::string::npos);
  b = bytes;
  put_u64(b, t0 + 9 + 4 + 16 + 4, uint64_t(1) << 40);
  EXPECT_NE(variant("offset", b).find("past the end"), std::string::npos);
  b = bytes;
  put_u32(b, t0 + 9, 5);
  EXPECT_NE(variant("ndims", b).find("5 dimensions"), std::string::npos);
  b = bytes;
  put_u64(b, t0 + 9 + 4, 0);
  EXPECT_NE(variant("dim0", b).find("impossible shape"), std::string::npos);
  EXPECT_NE(variant("tail", bytes.substr(0, bytes.size() - 40)).find("past the end"), std::string::npos);  // the last tensor cut

  // Truncated at every byte of the header and the first tensor bytes: always a clean error.
  for (size_t n = 0; n < std::min(bytes.size() - 40, size_t(2000)); ++n) {
    const std::string msg = variant("trunc", bytes.substr(0, n));
    ASSERT_FALSE(msg.empty()) << "a file cut at " << n << " bytes was accepted";
  }
  // Random byte flips: either a valid file or a clean error, never a crash or a hang.
  Rng rng(7);
  int refused = 0;
  for (int i = 0; i < 1500; ++i) {
    b = bytes;
    for (int f = 0; f < 3; ++f) b[rng.next_u64() % std::min<size_t>(b.size(), 1200)] = char(rng.next_u64());
    refused += variant("flip", b).empty() ? 0 : 1;
  }
  EXPECT_GT(refused, 100);
}

}  // namespace distill

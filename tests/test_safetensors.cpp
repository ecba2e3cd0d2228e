// safetensors reader and writer: round trip, and every kind of hostile file refused with a
// message that names the file and the tensor.
#include "formats/checkpoint.h"
#include "formats/safetensors.h"
#include "test_util.h"

namespace distill {
using test::TempDir;

namespace {

// A file with the given header text and `data_bytes` bytes of data.
std::string raw_file(const std::string& header, size_t data_bytes, int64_t declared_len = -1) {
  std::string s(8, '\0');
  const uint64_t len = declared_len >= 0 ? uint64_t(declared_len) : header.size();
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((len >> (8 * i)) & 0xff);
  return s + header + std::string(data_bytes, '\x01');
}

// Expects open() to throw with every needle in the message.
void expect_refused(const std::string& path, std::initializer_list<const char*> needles) {
  try {
    SafetensorsFile::open(path);
    FAIL() << "accepted " << path;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const char* n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

}  // namespace

TEST(Safetensors, WriteThenReadRoundTrip) {
  TempDir dir;
  Tensor a = Tensor::zeros(DType::F32, {2, 3});
  for (int i = 0; i < 6; ++i) a.data<float>()[i] = float(i) - 2.5f;
  Tensor b = a.to(DType::BF16), c = a.to(DType::F16);
  Tensor ids = Tensor::zeros(DType::I32, {5});
  for (int i = 0; i < 5; ++i) ids.data<int32_t>()[i] = i * 100;
  Tensor big = Tensor::zeros(DType::I64, {1});
  big.data<int64_t>()[0] = int64_t(1) << 40;
  SafetensorsWriter w;
  w.add("a", a);
  w.add("b.bf16", b);
  w.add("c", c);
  w.add("ids", ids);
  w.add("big", big);
  w.set_metadata("note", "hello");
  w.write(dir / "t.safetensors");

  SafetensorsFile f = SafetensorsFile::open(dir / "t.safetensors");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b.bf16", "c", "ids", "big"}));
  EXPECT_EQ(f.metadata().at("note"), "hello");
  Tensor a2 = f.get("a");
  EXPECT_EQ(a2.shape(), (Shape{2, 3}));
  EXPECT_EQ(a2.data<float>()[5], 2.5f);
  EXPECT_EQ(f.get("b.bf16").to(DType::F32).data<float>()[0], -2.5f);
  EXPECT_EQ(f.get("c").to(DType::F32).data<float>()[1], -1.5f);
  EXPECT_EQ(f.get("ids").data<int32_t>()[4], 400);
  EXPECT_EQ(f.get("big").data<int64_t>()[0], int64_t(1) << 40);
  // The header is padded so data starts 8-byte aligned: f32 views are zero-copy.
  const std::string bytes = test::read_bytes(dir / "t.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_FALSE(std::filesystem::exists(dir / "t.safetensors.tmp." + std::to_string(::getpid())));
}

TEST(Safetensors, UnalignedDataIsCopiedNotMisread) {
  TempDir dir;
  // Header of odd length: the f32 data starts at an odd offset.
  std::string header = R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  if ((8 + header.size()) % 4 == 0) header += " ";
  std::string file = raw_file(header, 0);
  const float v = 3.25f;
  file.append(reinterpret_cast<const char*>(&v), 4);
  test::write_bytes(dir / "u.safetensors", file);
  EXPECT_EQ(SafetensorsFile::open(dir / "u.safetensors").get("x").data<float>()[0], 3.25f);
}

TEST(Safetensors, RefusesTruncatedFile) {
  TempDir dir;
  test::write_bytes(dir / "short.safetensors", "abc");
  expect_refused(dir / "short.safetensors", {"too short"});
  // A real file cut in the middle of its data.
  Tensor a = Tensor::zeros(DType::F32, {64});
  SafetensorsWriter w;
  w.add("weight", a);
  w.write(dir / "full.safetensors");
  std::string bytes = test::read_bytes(dir / "full.safetensors");
  test::write_bytes(dir / "cut.safetensors", bytes.substr(0, bytes.size() - 10));
  expect_refused(dir / "cut.safetensors", {"weight", "past the end"});
}

TEST(Safetensors, RefusesHeaderLengthPastEnd) {
  TempDir dir;
  test::write_bytes(dir / "h.safetensors", raw_file("{}", 0, 1000));
  expect_refused(dir / "h.safetensors", {"header length 1000", "past the end"});
}

TEST(Safetensors, RefusesMalformedJson) {
  TempDir dir;
  test::write_bytes(dir / "j.safetensors", raw_file(R"({"x": {"dtype": "F32", )", 0));
  expect_refused(dir / "j.safetensors", {"malformed header JSON"});
  test::write_bytes(dir / "k.safetensors", raw_file(R"([1, 2])", 0));
  expect_refused(dir / "k.safetensors", {"not a JSON object"});
  test::write_bytes(dir / "l.safetensors", raw_file(R"({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})", 0));
  expect_refused(dir / "l.safetensors", {"'x'", "shape"});
  test::write_bytes(dir / "m.safetensors", raw_file(R"({"x": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 1]}})", 1));
  expect_refused(dir / "m.safetensors", {"'x'", "unsupported dtype"});
}

TEST(Safetensors, RefusesOverlappingAndOutOfRangeOffsets) {
  TempDir dir;
  test::write_bytes(dir / "o.safetensors",
                    raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12));
  expect_refused(dir / "o.safetensors", {"'a'", "'b'", "overlap"});
  test::write_bytes(dir / "r.safetensors", raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8));
  expect_refused(dir / "r.safetensors", {"'a'", "past the end of the data"});
  test::write_bytes(dir / "b.safetensors", raw_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8));
  expect_refused(dir / "b.safetensors", {"'a'", "backwards"});
}

TEST(Safetensors, RefusesDtypeShapeSizeMismatch) {
  TempDir dir;
  test::write_bytes(dir / "s.safetensors", raw_file(R"({"w":{"dtype":"BF16","shape":[3,3],"data_offsets":[0,36]}})", 36));
  expect_refused(dir / "s.safetensors", {"'w'", "[3, 3]", "BF16", "needs 18 bytes"});
  test::write_bytes(dir / "v.safetensors",
                    raw_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4));
  expect_refused(dir / "v.safetensors", {"'w'"});
}

TEST(Safetensors, MissingFileAndDirectory) {
  TempDir dir;
  EXPECT_THROW(SafetensorsFile::open(dir / "nope.safetensors"), Error);
  EXPECT_THROW(SafetensorsFile::open(dir.str()), Error);
}

TEST(TensorStore, ShardedIndex) {
  TempDir dir;
  Tensor a = Tensor::zeros(DType::F32, {2}), b = Tensor::zeros(DType::F32, {3});
  a.data<float>()[1] = 1.5f;
  b.data<float>()[2] = 2.5f;
  SafetensorsWriter w1, w2;
  w1.add("a", a);
  w2.add("b", b);
  w1.write(dir / "model-00001-of-00002.safetensors");
  w2.write(dir / "model-00002-of-00002.safetensors");
  test::write_bytes(dir / "model.safetensors.index.json",
                    R"({"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                                        "b": "model-00002-of-00002.safetensors"}})");
  TensorStore s = TensorStore::open_dir(dir.str());
  EXPECT_EQ(s.get("a").data<float>()[1], 1.5f);
  EXPECT_EQ(s.get("b").data<float>()[2], 2.5f);
  EXPECT_NE(s.source("b").find("00002"), std::string::npos);
  try {
    s.get("c");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'c' is missing"), std::string::npos);
  }
  // An index naming a tensor its shard lacks.
  test::write_bytes(dir / "model.safetensors.index.json",
                    R"({"weight_map": {"a": "model-00002-of-00002.safetensors"}})");
  try {
    TensorStore::open_dir(dir.str());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not contain"), std::string::npos) << e.what();
  }
}

}  // namespace distill

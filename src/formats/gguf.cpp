#include "formats/gguf.h"

#include "core/atomic_file.h"
#include "core/error.h"
#include "formats/mapped_file.h"

#include <algorithm>
#include <cstring>

namespace distill {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxDims = 4;
constexpr int kMaxArrayDepth = 4;

// Bounds-checked little-endian reads over the mapped bytes.
class Cursor {
public:
  Cursor(const unsigned char* p, size_t size, const std::string& path) : p_(p), size_(size), path_(path) {}
  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }
  template <typename T> T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    if (n > left()) fail("{}: {} claims a {}-byte string at offset {}, past the end of the file ({} bytes)", path_, what, n, pos_, size_);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(n));
    pos_ += size_t(n);
    return s;
  }
  [[noreturn]] void bad(const std::string& msg) const { fail("{}: {} (at byte {})", path_, msg, pos_); }

private:
  void need(size_t n, const char* what) const {
    if (n > left()) fail("{}: truncated: {} needs {} bytes at offset {}, the file has {}", path_, what, n, pos_, size_);
  }
  const unsigned char* p_;
  size_t size_, pos_ = 0;
  const std::string& path_;
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    case GgufType::String: return 8;  // at least its length
    case GgufType::Array: return 12;  // at least its header
  }
  return 0;
}

GgufValue read_value(Cursor& c, GgufType t, const std::string& key, int depth) {
  GgufValue v;
  v.type = t;
  switch (t) {
    case GgufType::U8: v.u = c.read<uint8_t>("a u8"); break;
    case GgufType::I8: v.i = c.read<int8_t>("an i8"); break;
    case GgufType::U16: v.u = c.read<uint16_t>("a u16"); break;
    case GgufType::I16: v.i = c.read<int16_t>("an i16"); break;
    case GgufType::U32: v.u = c.read<uint32_t>("a u32"); break;
    case GgufType::I32: v.i = c.read<int32_t>("an i32"); break;
    case GgufType::F32: v.f = c.read<float>("an f32"); break;
    case GgufType::Bool: {
      const uint8_t b = c.read<uint8_t>("a bool");
      if (b > 1) c.bad(fmt::format("metadata '{}': bool value {}", key, b));
      v.u = b;
      break;
    }
    case GgufType::String: v.s = c.read_string("a metadata string"); break;
    case GgufType::U64: v.u = c.read<uint64_t>("a u64"); break;
    case GgufType::I64: v.i = c.read<int64_t>("an i64"); break;
    case GgufType::F64: v.f = c.read<double>("an f64"); break;
    case GgufType::Array: {
      if (depth >= kMaxArrayDepth) c.bad(fmt::format("metadata '{}': arrays nested deeper than {}", key, kMaxArrayDepth));
      const uint32_t et = c.read<uint32_t>("an array type");
      if (et > uint32_t(GgufType::F64)) c.bad(fmt::format("metadata '{}': unknown array element type {}", key, et));
      v.elem = GgufType(et);
      const uint64_t n = c.read<uint64_t>("an array length");
      // every element takes at least scalar_size bytes: a count beyond that cannot be real
      if (n > c.left() / scalar_size(v.elem))
        c.bad(fmt::format("metadata '{}': array of {} {} elements cannot fit in the {} bytes left", key, n, gguf_type_name(v.elem), c.left()));
      v.arr.reserve(size_t(n));
      for (uint64_t i = 0; i < n; ++i) v.arr.push_back(read_value(c, v.elem, key, depth + 1));
      break;
    }
  }
  return v;
}

}  // namespace

GgufValue GgufValue::of_strings(const std::vector<std::string>& v) {
  std::vector<GgufValue> a;
  a.reserve(v.size());
  for (const auto& s : v) a.push_back(of_string(s));
  return of_array(GgufType::String, std::move(a));
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16: case GgufType::U32:
    case GgufType::I32: case GgufType::U64: case GgufType::I64: case GgufType::Bool: return true;
    default: return false;
  }
}

int64_t GgufValue::as_int() const {
  switch (type) {
    case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64: return i;
    default: return int64_t(u);
  }
}

double GgufValue::as_double() const { return is_float() ? f : double(as_int()); }

bool GgufValue::operator==(const GgufValue& o) const {
  return type == o.type && elem == o.elem && u == o.u && i == o.i && (f == o.f || (f != f && o.f != o.f)) && s == o.s && arr == o.arr;
}

const char* gguf_type_name(GgufType t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  return uint32_t(t) <= uint32_t(GgufType::F64) ? names[uint32_t(t)] : "?";
}

uint32_t ggml_type_of(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q8_0: return 8;
    case DType::Q4_K: return 12;
    case DType::Q5_K: return 13;
    case DType::Q6_K: return 14;
    case DType::MXFP4: return 39;
    case DType::BF16: return 30;
    default: fail("GGUF cannot hold {} tensors", dtype_name(t));
  }
}

std::optional<DType> dtype_of_ggml(uint32_t g) {
  switch (g) {
    case 0: return DType::F32;
    case 1: return DType::F16;
    case 2: return DType::Q4_0;
    case 8: return DType::Q8_0;
    case 12: return DType::Q4_K;
    case 13: return DType::Q5_K;
    case 14: return DType::Q6_K;
    case 39: return DType::MXFP4;
    case 30: return DType::BF16;
    default: return std::nullopt;
  }
}

const char* ggml_type_name(uint32_t g) {
  static const char* names[] = {"F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
                                "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS",
                                "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64",
                                "IQ1_M", "BF16"};
  return g < sizeof(names) / sizeof(names[0]) ? names[g] : "unknown";
}

GgufFile GgufFile::open(const std::string& path) {
  GgufFile g;
  g.path_ = path;
  g.file_ = MappedFile::open(path);
  Cursor c(g.file_->data(), g.file_->size(), path);
  if (g.file_->size() < 4 || c.read<uint32_t>("the magic") != kMagic) fail("{}: not a GGUF file (bad magic)", path);
  g.version_ = c.read<uint32_t>("the version");
  if (g.version_ != 2 && g.version_ != 3)
    fail("{}: GGUF version {} is not supported (versions 2 and 3 are)", path, g.version_);
  const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
  const uint64_t n_kv = c.read<uint64_t>("the metadata count");
  // a metadata entry takes at least 8 + 4 + 1 bytes, a tensor info at least 8 + 4 + 8 + 4 + 8
  if (n_kv > c.left() / 13) fail("{}: {} metadata entries cannot fit in a {}-byte file", path, n_kv, g.file_->size());
  if (n_tensors > c.left() / 32) fail("{}: {} tensors cannot fit in a {}-byte file", path, n_tensors, g.file_->size());
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.read_string("a metadata key");
    const uint32_t t = c.read<uint32_t>("a metadata type");
    if (t > uint32_t(GgufType::F64)) c.bad(fmt::format("metadata '{}': unknown value type {}", key, t));
    GgufValue v = read_value(c, GgufType(t), key, 0);
    if (g.kv_index_.count(key)) c.bad(fmt::format("metadata key '{}' appears twice", key));
    g.kv_index_[key] = g.kv_.size();
    g.kv_.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = g.find("general.alignment")) {
    if (!a->is_integer() || a->as_int() <= 0 || a->as_int() > (1 << 20) || (a->as_int() & (a->as_int() - 1)) != 0)
      fail("{}: general.alignment must be a power of two up to 1 MiB", path);
    g.alignment_ = size_t(a->as_int());
  }
  for (uint64_t t = 0; t < n_tensors; ++t) {
    GgufTensorInfo info;
    info.name = c.read_string("a tensor name");
    const uint32_t nd = c.read<uint32_t>("a tensor's dimension count");
    if (nd == 0 || nd > kMaxDims) c.bad(fmt::format("tensor '{}' has {} dimensions (1..{} allowed)", info.name, nd, kMaxDims));
    std::vector<int64_t> ne(nd);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t v = c.read<uint64_t>("a tensor dimension");
      if (v == 0 || v > (uint64_t(1) << 40) || __builtin_mul_overflow(numel, v, &numel) || numel > (uint64_t(1) << 48))
        c.bad(fmt::format("tensor '{}' has an impossible shape (dimension {} = {})", info.name, d, v));
      ne[d] = int64_t(v);
    }
    const uint32_t gt = c.read<uint32_t>("a tensor type");
    const auto dt = dtype_of_ggml(gt);
    if (!dt)
      fail("{}: tensor '{}' has type {} ({}), which distill does not read (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, MXFP4)",
           path, info.name, gt, ggml_type_name(gt));
    info.dtype = *dt;
    if (ne[0] % dtype_block(info.dtype) != 0)
      c.bad(fmt::format("tensor '{}': rows of {} elements are not whole {} blocks", info.name, ne[0], dtype_name(info.dtype)));
    info.offset = c.read<uint64_t>("a tensor offset");
    for (int d = int(nd) - 1; d >= 0; --d) info.shape.push_back(ne[size_t(d)]);
    info.nbytes = dtype_bytes(info.dtype, int64_t(numel));
    if (g.tensor_index_.count(info.name)) c.bad(fmt::format("tensor '{}' appears twice", info.name));
    g.tensor_index_[info.name] = g.tensors_.size();
    g.tensors_.push_back(std::move(info));
  }
  g.data_start_ = (c.pos() + g.alignment_ - 1) / g.alignment_ * g.alignment_;
  for (const GgufTensorInfo& t : g.tensors_) {
    if (t.offset % g.alignment_ != 0)
      fail("{}: tensor '{}' starts at offset {}, not a multiple of the alignment {}", path, t.name, t.offset, g.alignment_);
    uint64_t end;
    if (__builtin_add_overflow(uint64_t(g.data_start_), t.offset, &end) || __builtin_add_overflow(end, uint64_t(t.nbytes), &end) ||
        end > g.file_->size())
      fail("{}: tensor '{}' ({} bytes at data offset {}) runs past the end of the file ({} bytes): truncated?", path, t.name,
           t.nbytes, t.offset, g.file_->size());
  }
  // Tensors may not share bytes (as safetensors requires too): an overlap means a corrupted
  // offset, or a type changed to a larger one, and would read one tensor's bytes as another's.
  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& t : g.tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo &prev = *by_offset[i - 1], &t = *by_offset[i];
    if (prev.offset + uint64_t(prev.nbytes) > t.offset)
      fail("{}: tensor '{}' (data offset {}) overlaps '{}' ({} bytes at data offset {})", path, t.name, t.offset, prev.name,
           prev.nbytes, prev.offset);
  }
  return g;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufValue& GgufFile::get(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail("{}: metadata '{}' is missing", path_, key);
  return *v;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = get(key);
  if (v.type != GgufType::String) fail("{}: metadata '{}' is a {}, not a string", path_, key, gguf_type_name(v.type));
  return v.s;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = get(key);
  if (!v.is_integer()) fail("{}: metadata '{}' is a {}, not an integer", path_, key, gguf_type_name(v.type));
  return v.as_int();
}

double GgufFile::get_number(const std::string& key) const {
  const GgufValue& v = get(key);
  if (!v.is_integer() && !v.is_float()) fail("{}: metadata '{}' is a {}, not a number", path_, key, gguf_type_name(v.type));
  return v.as_double();
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Tensor GgufFile::tensor(const GgufTensorInfo& info) const {
  auto* p = const_cast<unsigned char*>(file_->data() + data_start_ + info.offset);
  return Tensor::view(info.dtype, info.shape, p, file_);
}

// ---------------------------------------------------------------------------------------------

void GgufWriter::set(const std::string& key, GgufValue v) {
  for (auto& [k, old] : kv_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv_.emplace_back(key, std::move(v));
}

void GgufWriter::add_tensor(const std::string& name, DType dtype, const Shape& shape, const void* data, size_t nbytes) {
  ggml_type_of(dtype);  // throws for types GGUF cannot hold
  if (shape.empty() || shape.size() > size_t(kMaxDims)) fail("GGUF tensor '{}': {} dimensions", name, shape.size());
  if (nbytes != dtype_bytes(dtype, shape_numel(shape)))
    fail("GGUF tensor '{}': {} bytes given for {} {}", name, nbytes, shape_str(shape), dtype_name(dtype));
  Pending p{name, dtype, shape, {}};
  p.data.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + nbytes);
  tensors_.push_back(std::move(p));
}

namespace {

class ByteSink {
public:
  template <typename T> void put(T v) {
    const auto* p = reinterpret_cast<const char*>(&v);
    buf.append(p, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    buf += s;
  }
  void put_value(const GgufValue& v) {
    switch (v.type) {
      case GgufType::U8: put<uint8_t>(uint8_t(v.u)); break;
      case GgufType::I8: put<int8_t>(int8_t(v.i)); break;
      case GgufType::U16: put<uint16_t>(uint16_t(v.u)); break;
      case GgufType::I16: put<int16_t>(int16_t(v.i)); break;
      case GgufType::U32: put<uint32_t>(uint32_t(v.u)); break;
      case GgufType::I32: put<int32_t>(int32_t(v.i)); break;
      case GgufType::F32: put<float>(float(v.f)); break;
      case GgufType::Bool: put<uint8_t>(v.u ? 1 : 0); break;
      case GgufType::String: put_string(v.s); break;
      case GgufType::U64: put<uint64_t>(v.u); break;
      case GgufType::I64: put<int64_t>(v.i); break;
      case GgufType::F64: put<double>(v.f); break;
      case GgufType::Array:
        put<uint32_t>(uint32_t(v.elem));
        put<uint64_t>(v.arr.size());
        for (const GgufValue& e : v.arr) {
          if (e.type != v.elem) fail("GGUF array of {} holds a {}", gguf_type_name(v.elem), gguf_type_name(e.type));
          put_value(e);
        }
        break;
    }
  }
  std::string buf;
};

}  // namespace

void GgufWriter::write(const std::string& path, size_t alignment) const {
  ByteSink h;
  h.put<uint32_t>(kMagic);
  h.put<uint32_t>(3);
  h.put<uint64_t>(tensors_.size());
  const bool has_alignment = std::any_of(kv_.begin(), kv_.end(), [](const auto& kv) { return kv.first == "general.alignment"; });
  h.put<uint64_t>(kv_.size() + (alignment != 32 && !has_alignment ? 1 : 0));
  for (const auto& [k, v] : kv_) {
    h.put_string(k);
    h.put<uint32_t>(uint32_t(v.type));
    h.put_value(v);
  }
  if (alignment != 32 && !has_alignment) {
    h.put_string("general.alignment");
    h.put<uint32_t>(uint32_t(GgufType::U32));
    h.put<uint32_t>(uint32_t(alignment));
  }
  uint64_t offset = 0;
  for (const Pending& t : tensors_) {
    h.put_string(t.name);
    h.put<uint32_t>(uint32_t(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) h.put<uint64_t>(uint64_t(*it));
    h.put<uint32_t>(ggml_type_of(t.dtype));
    h.put<uint64_t>(offset);
    offset += (t.data.size() + alignment - 1) / alignment * alignment;
  }
  h.buf.resize((h.buf.size() + alignment - 1) / alignment * alignment, '\0');
  AtomicFileWriter out(path);
  out.write(h.buf.data(), h.buf.size());
  const std::string pad(alignment, '\0');
  for (const Pending& t : tensors_) {
    out.write(t.data.data(), t.data.size());
    const size_t rem = t.data.size() % alignment;
    if (rem) out.write(pad.data(), alignment - rem);
  }
  out.commit();
}

}  // namespace distill

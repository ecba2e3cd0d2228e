// GGUF (version 2 and 3) — llama.cpp's single-file model format. Byte layout, little-endian:
//
//   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv × (string key | u32 value_type | value)
//   n_tensors × (string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset)
//   padding to `general.alignment` (default 32) | tensor data (each at data_start + offset)
//
//   string = u64 length + bytes (no terminator); array value = u32 elem_type + u64 count + elements
//   value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array,
//                10 u64, 11 i64, 12 f64
//   ne[0] is the innermost (contiguous) dimension: a Hugging Face [rows, cols] matrix has
//   ne = {cols, rows}. Shapes here are given in the Hugging Face order (ne reversed).
//
// Reading maps the file and checks every count, length, type and offset against the file size
// before use: a hostile file is refused with a message naming what is wrong and where.
#pragma once

#include "core/tensor.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace distill {

class MappedFile;

enum class GgufType : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64 };

struct GgufValue {
  GgufType type = GgufType::U32;
  GgufType elem = GgufType::U8;  // arrays: the element type
  uint64_t u = 0;                // unsigned integers and bool
  int64_t i = 0;                 // signed integers
  double f = 0;                  // floats
  std::string s;                 // strings
  std::vector<GgufValue> arr;    // arrays

  static GgufValue of_u32(uint32_t v) { GgufValue x; x.type = GgufType::U32, x.u = v; return x; }
  static GgufValue of_i32(int32_t v) { GgufValue x; x.type = GgufType::I32, x.i = v; return x; }
  static GgufValue of_u64(uint64_t v) { GgufValue x; x.type = GgufType::U64, x.u = v; return x; }
  static GgufValue of_f32(float v) { GgufValue x; x.type = GgufType::F32, x.f = v; return x; }
  static GgufValue of_bool(bool v) { GgufValue x; x.type = GgufType::Bool, x.u = v; return x; }
  static GgufValue of_string(std::string v) { GgufValue x; x.type = GgufType::String, x.s = std::move(v); return x; }
  static GgufValue of_array(GgufType elem, std::vector<GgufValue> v) {
    GgufValue x;
    x.type = GgufType::Array, x.elem = elem, x.arr = std::move(v);
    return x;
  }
  static GgufValue of_strings(const std::vector<std::string>& v);

  bool is_integer() const;
  bool is_float() const { return type == GgufType::F32 || type == GgufType::F64; }
  int64_t as_int() const;      // any integer or bool type
  double as_double() const;    // any number
  bool operator==(const GgufValue& o) const;
};

const char* gguf_type_name(GgufType t);
// ggml tensor type ids (0 F32, 1 F16, 2 Q4_0, 8 Q8_0, 12 Q4_K, 13 Q5_K, 14 Q6_K, 30 BF16).
uint32_t ggml_type_of(DType t);          // throws for a type GGUF cannot hold
std::optional<DType> dtype_of_ggml(uint32_t ggml_type);
const char* ggml_type_name(uint32_t ggml_type);  // "Q4_1", "IQ2_XS", ... for messages

struct GgufTensorInfo {
  std::string name;
  Shape shape;        // Hugging Face order (ne reversed)
  DType dtype;
  uint64_t offset;    // from the start of the data section
  size_t nbytes;
};

class GgufFile {
public:
  static GgufFile open(const std::string& path);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  // Typed getters: throw naming the key when absent or of another type.
  const GgufValue& get(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_number(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // A view into the mapped file (kept alive by the view).
  Tensor tensor(const GgufTensorInfo& info) const;

private:
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  size_t data_start_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Collects metadata and tensors, then writes a GGUF v3 file atomically.
class GgufWriter {
public:
  void set(const std::string& key, GgufValue v);  // keeps the insertion order; replaces a key
  // `data` holds the tensor's bytes in `dtype` (dtype_bytes(dtype, numel)); copied.
  void add_tensor(const std::string& name, DType dtype, const Shape& shape, const void* data, size_t nbytes);
  void write(const std::string& path, size_t alignment = 32) const;

private:
  std::vector<std::pair<std::string, GgufValue>> kv_;
  struct Pending {
    std::string name;
    DType dtype;
    Shape shape;
    std::vector<uint8_t> data;
  };
  std::vector<Pending> tensors_;
};

}  // namespace distill

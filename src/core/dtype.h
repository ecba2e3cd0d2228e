// Element types of tensors and the conversions between the float formats.
// f16 is IEEE 754 binary16; bf16 is the top 16 bits of an f32 (round-to-nearest-even on store).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace distill {

// Q8_0 … Q6_K and MXFP4 are GGUF's block-quantized formats (kernels/quant_blocks.h has their layouts): a
// row of n elements is n / dtype_block(t) blocks of dtype_block_bytes(t) bytes.
enum class DType : uint8_t { F32, F16, BF16, I32, I64, U8, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, MXFP4 };

size_t dtype_size(DType t);                    // bytes per element; 0 for block-quantized types
bool dtype_is_quantized(DType t);
int64_t dtype_block(DType t);                  // elements per block (1 for plain types)
size_t dtype_block_bytes(DType t);             // bytes per block
// Bytes of n elements (n a multiple of the block size; throws otherwise).
size_t dtype_bytes(DType t, int64_t n);
std::string_view dtype_name(DType t);          // safetensors spelling: "F32", "BF16", ... (GGUF's: "Q8_0", "Q4_K")
bool dtype_from_name(std::string_view name, DType* out);  // plain types only; false if unknown

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffff) > 0x7f800000) return uint16_t((bits >> 16) | 0x40);  // keep NaN a NaN
  bits += 0x7fff + ((bits >> 16) & 1);  // round to nearest, ties to even
  return uint16_t(bits >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Bulk conversions (scalar; the hot paths use the AVX2 kernels).
void convert_to_f32(float* dst, const void* src, DType src_type, size_t n);
void convert_from_f32(void* dst, DType dst_type, const float* src, size_t n);

}  // namespace distill

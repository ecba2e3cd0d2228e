#include "core/dtype.h"

#include "core/error.h"

namespace distill {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: return 1;
    default: return 0;
  }
}

bool dtype_is_quantized(DType t) { return dtype_block(t) > 1; }

int64_t dtype_block(DType t) {
  switch (t) {
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::MXFP4: return 32;
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return 256;
    default: return 1;
  }
}

size_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::Q8_0: return 34;   // f16 scale + 32 int8
    case DType::Q4_0: return 18;   // f16 scale + 32 nibbles
    case DType::Q4_K: return 144;  // f16 d, dmin + 12 scale bytes + 128 nibble bytes
    case DType::Q5_K: return 176;  // Q4_K + 32 bytes of 5th bits
    case DType::Q6_K: return 210;  // 128 low nibbles + 64 high 2-bit + 16 int8 scales + f16 d
    case DType::MXFP4: return 17;  // E8M0 scale + 32 E2M1 nibbles
    default: return dtype_size(t);
  }
}

size_t dtype_bytes(DType t, int64_t n) {
  const int64_t b = dtype_block(t);
  if (n < 0 || n % b != 0) fail("{} elements of {} are not a whole number of {}-element blocks", n, dtype_name(t), b);
  return size_t(n / b) * dtype_block_bytes(t);
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
    case DType::Q8_0: return "Q8_0";
    case DType::Q4_0: return "Q4_0";
    case DType::Q4_K: return "Q4_K";
    case DType::Q5_K: return "Q5_K";
    case DType::Q6_K: return "Q6_K";
    case DType::MXFP4: return "MXFP4";
  }
  return "?";
}

bool dtype_from_name(std::string_view name, DType* out) {
  static constexpr DType all[] = {DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::U8};
  for (DType t : all) {
    if (dtype_name(t) == name) {
      *out = t;
      return true;
    }
  }
  return false;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000 | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    // subnormal: shift the mantissa up until its leading 1 is the implicit bit
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400) == 0);
    bits = sign | uint32_t(112 - e) << 23 | ((mant & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  const uint32_t abs = bits & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00;          // nan
  if (abs >= 0x477ff000) return sign | 0x7c00;         // overflows to inf (incl. rounding up)
  if (abs < 0x38800000) {                              // result is subnormal or zero
    if (abs < 0x33000000) return sign;                 // below half the smallest subnormal
    const uint32_t e = abs >> 23;
    const uint32_t mant = (abs & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - e;                    // 14 + (112 - e) + ... aligns to 2^-24
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;
    return sign | uint16_t(q);
  }
  uint32_t r = abs - 0x38000000;                       // rebias 127 -> 15 (in the f32 layout)
  r += 0xfff + ((r >> 13) & 1);                        // round to nearest, ties to even
  return sign | uint16_t(r >> 13);
}

void convert_to_f32(float* dst, const void* src, DType src_type, size_t n) {
  switch (src_type) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::F16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::BF16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    default: fail("cannot convert {} to F32", dtype_name(src_type));
  }
}

void convert_from_f32(void* dst, DType dst_type, const float* src, size_t n) {
  switch (dst_type) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    default: fail("cannot convert F32 to {}", dtype_name(dst_type));
  }
}

}  // namespace distill

// Byte layouts of GGUF's block-quantized formats, bit-compatible with ggml (the GGUF
// specification's Q8_0, Q4_0, Q4_K, Q5_K, Q6_K). All scales are IEEE f16. Values:
//
//   Q8_0 (32 per block, 34 B):  x[i] = d · qs[i]                      qs int8
//   Q4_0 (32 per block, 18 B):  x[i] = d · ((qs[i] & 15) − 8),  x[i+16] = d · ((qs[i] >> 4) − 8)
//   Q4_K (256, 144 B): 8 sub-blocks of 32 with 6-bit scale sc and min m (packed in scales[12]):
//                      x = d·sc · q − dmin·m,  q 4-bit; sub-blocks 2j, 2j+1 share the bytes
//                      qs[32j..32j+31] (low nibbles, high nibbles)
//   Q5_K (256, 176 B): as Q4_K with a 5th bit per value in qh[32] (bit 2j / 2j+1 of qh[l])
//   Q6_K (256, 210 B): 16 sub-blocks of 16 with int8 scales: x = d · scales[s] · (q − 32), q 6-bit
//                      (low 4 bits in ql, high 2 in qh)
//   MXFP4 (32, 17 B):  OCP microscaling FP4 (GPT-OSS experts). e: E8M0 scale 2^(e − 127); qs[j]
//                      holds values j (low nibble) and j + 16 (high), each an E2M1 code: sign bit 3,
//                      magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6. ggml (and here) keeps the magnitudes
//                      doubled as int8 (kMxfp4Doubled) with the scale halved: x = kMxfp4Doubled[q] ·
//                      2^(e − 128). Hugging Face's gpt-oss safetensors (`*_blocks`, `*_scales`) pack
//                      values 2j (low) and 2j + 1 (high) instead, with the scales in their own tensor.
#pragma once

#include <cstdint>
#include <cstring>

namespace distill {

constexpr int64_t kQK = 32;    // elements per Q8_0 / Q4_0 block
constexpr int64_t kQKK = 256;  // elements per K-quant super-block

struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};
// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block's 12 scale bytes: bytes
// 0..3 hold the scales of sub-blocks 0..3 (low 6 bits), 4..7 their mins; sub-blocks 4..7 keep their
// low 4 bits in bytes 8..11 and their top 2 bits in the top bits of bytes 0..7.
inline void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

struct BlockMxfp4 {
  uint8_t e;
  uint8_t qs[kQK / 2];
};
// E2M1 codes as int8 values times 2: exact, and what the int8 kernels multiply.
constexpr int8_t kMxfp4Doubled[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
// 2^(e − 128), the scale of the doubled values (e = 255, E8M0's NaN, reads as 2^127).
inline float mxfp4_half_scale(uint8_t e) {
  const uint32_t bits = e >= 2 ? uint32_t(e - 1) << 23 : 0x00200000u << e;  // normal, or the two subnormal powers
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

// All eight 6-bit scales (sc) and minimums (m) of a Q4_K / Q5_K super-block at once, as bytes 0-7
// of two words (scale_min_k4 for all j, without a branch).
// scales[0..3]: sc 0-3 (low 6 bits), their top 2 bits are sc 4-7's high bits; scales[4..7] the
// same for m; scales[8..11]: sc 4-7 in the low nibbles, m 4-7 in the high ones.
inline void scales_mins_k4(const uint8_t* s12, uint64_t* sc, uint64_t* m) {
  uint32_t u0, u1, u2;
  std::memcpy(&u0, s12, 4), std::memcpy(&u1, s12 + 4, 4), std::memcpy(&u2, s12 + 8, 4);
  const uint32_t sc_hi = (u2 & 0x0F0F0F0Fu) | (((u0 >> 6) & 0x03030303u) << 4);
  const uint32_t m_hi = ((u2 >> 4) & 0x0F0F0F0Fu) | (((u1 >> 6) & 0x03030303u) << 4);
  *sc = uint64_t(u0 & 0x3F3F3F3Fu) | (uint64_t(sc_hi) << 32);
  *m = uint64_t(u1 & 0x3F3F3F3Fu) | (uint64_t(m_hi) << 32);
}

static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockMxfp4) == 17,
              "GGUF block sizes");

}  // namespace distill

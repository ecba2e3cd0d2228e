// Scalar reference of the GGUF block formats: quantize and dequantize rows.
#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"
#include "kernels/ref/kquant.h"

#include <algorithm>
#include <cmath>

namespace distill::ref {

namespace {

// MXFP4 of 32 values, as the OCP microscaling spec derives the scale: the shared exponent is
// floor(log2(amax)) − 2 (E2M1's largest exponent), so amax / scale lies in [4, 8) and values past 6
// clamp to ±6; each value becomes the nearest E2M1 code.
void quantize_block_mxfp4(BlockMxfp4* y, const float* x) {
  float amax = 0;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const int e = amax > 0 ? std::clamp(int(std::floor(std::log2(amax))) - 2 + 127, 0, 254) : 0;
  y->e = uint8_t(e);
  const float d = mxfp4_half_scale(y->e);  // the doubled codes' unit
  auto code = [&](float v) {
    int best = 0;
    for (int c = 1; c < 16; ++c)
      if (std::fabs(v - d * kMxfp4Doubled[c]) < std::fabs(v - d * kMxfp4Doubled[best])) best = c;
    return best;
  };
  for (int j = 0; j < kQK / 2; ++j) y->qs[j] = uint8_t(code(x[j]) | (code(x[j + kQK / 2]) << 4));
}

}  // namespace

void quantize_row(void* dst, DType type, const float* x, int64_t n) {
  switch (type) {
    case DType::MXFP4: {
      auto* y = static_cast<BlockMxfp4*>(dst);
      for (int64_t b = 0; b < n / kQK; ++b) quantize_block_mxfp4(y + b, x + b * kQK);
      return;
    }
    case DType::Q8_0: {
      auto* y = static_cast<BlockQ8_0*>(dst);
      for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
        float amax = 0;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = f32_to_f16(d);
        for (int j = 0; j < kQK; ++j) y[b].qs[j] = int8_t(std::lround(x[j] * id));  // roundf: half away from zero
      }
      return;
    }
    case DType::Q4_0: {
      auto* y = static_cast<BlockQ4_0*>(dst);
      for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
        float amax = 0, max = 0;  // the value of largest magnitude, with its sign
        for (int j = 0; j < kQK; ++j)
          if (amax < std::fabs(x[j])) amax = std::fabs(x[j]), max = x[j];
        const float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = f32_to_f16(d);
        for (int j = 0; j < kQK / 2; ++j) {
          // + 8.5 then truncation: round to nearest level 0..15 (max maps to 0, −max to 16 → 15)
          const uint8_t lo = uint8_t(std::min(15, int(int8_t(x[j] * id + 8.5f))));
          const uint8_t hi = uint8_t(std::min(15, int(int8_t(x[j + kQK / 2] * id + 8.5f))));
          y[b].qs[j] = uint8_t(lo | (hi << 4));
        }
      }
      return;
    }
    case DType::Q4_K: {
      auto* y = static_cast<BlockQ4_K*>(dst);
      uint8_t L[kQKK];
      for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
        kquant_affine_block(x, 15, &y[b].d, &y[b].dmin, y[b].scales, L);
        for (int j = 0; j < kQKK; j += 64)
          for (int l = 0; l < 32; ++l) y[b].qs[j / 2 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
      }
      return;
    }
    case DType::Q5_K: {
      auto* y = static_cast<BlockQ5_K*>(dst);
      uint8_t L[kQKK];
      for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
        kquant_affine_block(x, 31, &y[b].d, &y[b].dmin, y[b].scales, L);
        std::fill(y[b].qh, y[b].qh + kQKK / 8, 0);
        uint8_t m1 = 1, m2 = 2;
        for (int j = 0; j < kQKK; j += 64, m1 <<= 2, m2 <<= 2)
          for (int l = 0; l < 32; ++l) {
            int l1 = L[j + l], l2 = L[j + l + 32];
            if (l1 > 15) l1 -= 16, y[b].qh[l] |= m1;
            if (l2 > 15) l2 -= 16, y[b].qh[l] |= m2;
            y[b].qs[j / 2 + l] = uint8_t(l1 | (l2 << 4));
          }
      }
      return;
    }
    case DType::Q6_K: {
      auto* y = static_cast<BlockQ6_K*>(dst);
      for (int64_t b = 0; b < n / kQKK; ++b, x += kQKK) {
        uint8_t L[kQKK];
        kquant_symmetric_block(x, &y[b].d, y[b].scales, L);
        uint8_t* ql = y[b].ql;
        uint8_t* qh = y[b].qh;
        for (int j = 0; j < kQKK; j += 128, ql += 64, qh += 32)
          for (int l = 0; l < 32; ++l) {
            ql[l] = uint8_t((L[j + l] & 0xF) | ((L[j + l + 64] & 0xF) << 4));
            ql[l + 32] = uint8_t((L[j + l + 32] & 0xF) | ((L[j + l + 96] & 0xF) << 4));
            qh[l] = uint8_t((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
          }
      }
      return;
    }
    default: convert_from_f32(dst, type, x, size_t(n)); return;
  }
}

void dequantize_row(float* y, const void* src, DType type, int64_t n) {
  switch (type) {
    case DType::Q8_0: {
      const auto* x = static_cast<const BlockQ8_0*>(src);
      for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
        const float d = f16_to_f32(x[b].d);
        for (int j = 0; j < kQK; ++j) y[j] = d * float(x[b].qs[j]);
      }
      return;
    }
    case DType::Q4_0: {
      const auto* x = static_cast<const BlockQ4_0*>(src);
      for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
        const float d = f16_to_f32(x[b].d);
        for (int j = 0; j < kQK / 2; ++j) {
          y[j] = d * float((x[b].qs[j] & 0xF) - 8);
          y[j + kQK / 2] = d * float((x[b].qs[j] >> 4) - 8);
        }
      }
      return;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = type == DType::Q5_K;
      const auto* x4 = static_cast<const BlockQ4_K*>(src);
      const auto* x5 = static_cast<const BlockQ5_K*>(src);
      for (int64_t b = 0; b < n / kQKK; ++b) {
        const uint16_t dh = five ? x5[b].d : x4[b].d, mh = five ? x5[b].dmin : x4[b].dmin;
        const uint8_t* scales = five ? x5[b].scales : x4[b].scales;
        const uint8_t* q = five ? x5[b].qs : x4[b].qs;
        const uint8_t* qh = five ? x5[b].qh : nullptr;
        const float d = f16_to_f32(dh), dmin = f16_to_f32(mh);
        for (int j = 0, is = 0; j < kQKK; j += 64, q += 32, is += 2) {
          int sc, m;
          scale_min_k4(is, scales, &sc, &m);
          const float d1 = d * float(sc), m1 = dmin * float(m);
          scale_min_k4(is + 1, scales, &sc, &m);
          const float d2 = d * float(sc), m2 = dmin * float(m);
          const uint8_t u1 = uint8_t(1 << is), u2 = uint8_t(2 << is);  // this pair's bits in qh
          for (int l = 0; l < 32; ++l) *y++ = d1 * float((q[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1;
          for (int l = 0; l < 32; ++l) *y++ = d2 * float((q[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2;
        }
      }
      return;
    }
    case DType::MXFP4: {
      const auto* x = static_cast<const BlockMxfp4*>(src);
      for (int64_t b = 0; b < n / kQK; ++b, y += kQK) {
        const float d = mxfp4_half_scale(x[b].e);
        for (int j = 0; j < kQK / 2; ++j) {
          y[j] = d * float(kMxfp4Doubled[x[b].qs[j] & 0xF]);
          y[j + kQK / 2] = d * float(kMxfp4Doubled[x[b].qs[j] >> 4]);
        }
      }
      return;
    }
    case DType::Q6_K: {
      const auto* x = static_cast<const BlockQ6_K*>(src);
      for (int64_t b = 0; b < n / kQKK; ++b) {
        const float d = f16_to_f32(x[b].d);
        const uint8_t* ql = x[b].ql;
        const uint8_t* qh = x[b].qh;
        const int8_t* sc = x[b].scales;
        for (int j = 0; j < kQKK; j += 128, y += 128, ql += 64, qh += 32, sc += 8)
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * float(sc[is]) * float(q1);
            y[l + 32] = d * float(sc[is + 2]) * float(q2);
            y[l + 64] = d * float(sc[is + 4]) * float(q3);
            y[l + 96] = d * float(sc[is + 6]) * float(q4);
          }
      }
      return;
    }
    default: convert_to_f32(y, src, type, size_t(n)); return;
  }
}

}  // namespace distill::ref

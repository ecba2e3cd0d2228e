// K-quant scale search. Two stages per 256-value super-block:
//   1. each sub-block (32 values for Q4_K/Q5_K, 16 for Q6_K) gets the real-valued scale (and min)
//      that minimises its squared error: a handful of candidate ranges around the min/max one, the
//      levels each gives, then the least-squares scale (and offset) for those levels;
//   2. the sub-block scales are themselves quantized (6-bit against d/dmin, or int8 against d), the
//      levels re-rounded for the scales actually stored, and d (and dmin) refitted by least squares
//      over the whole super-block — kept only where it lowers the error.
// For Q4_K/Q5_K the min/max encoding is computed too and kept where it is better, so the search
// never does worse than it on any block.
#include "kernels/ref/kquant.h"

#include "core/dtype.h"
#include "kernels/quant_blocks.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace distill::ref {

namespace {

constexpr int kSuper = 256;

// Round to nearest, ties away from zero (a truncating conversion: lround and lrint are library calls).
int nearest_int(float x) { return int(x + (x >= 0 ? 0.5f : -0.5f)); }

float f16_round(float v) { return f16_to_f32(f32_to_f16(v)); }

void pack_scale_min_k4(const int* sc, const int* m, uint8_t* q) {
  for (int j = 0; j < 12; ++j) q[j] = 0;
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      q[j] = uint8_t(sc[j]);
      q[j + 4] = uint8_t(m[j]);
    } else {
      q[j + 4] = uint8_t((sc[j] & 0xF) | ((m[j] & 0xF) << 4));
      q[j - 4] |= uint8_t((sc[j] >> 4) << 6);
      q[j] |= uint8_t((m[j] >> 4) << 6);
    }
  }
}

// How much each value's error counts: σ + |x| (σ the super-block's RMS). Measured against plain
// squared error on a 134M model: lower error weighted by |x| and, for Q6_K, lower plain error too,
// at a small cost in plain error for Q4_K — large weights are rarely where precision can be spared.
void importance(const float* x, float* w) {
  double s2 = 0;
  for (int i = 0; i < kSuper; ++i) s2 += double(x[i]) * x[i];
  const float sigma = float(std::sqrt(s2 / kSuper));
  for (int i = 0; i < kSuper; ++i) w[i] = sigma + std::fabs(x[i]);
}

// Alternates "levels for the fit, the fit for the levels" (refit: a fit -> the next fit and its
// error) while the error falls, at most 4 rounds.
template <typename Fit, typename Refit>
Fit refine(Fit best, double best_err, Refit refit) {
  for (int round = 0; round < 4; ++round) {
    const auto [f, e] = refit(best);
    if (e >= best_err) break;
    best_err = e, best = f;
  }
  return best;
}

// ---- Q4_K / Q5_K: x ≈ a·q + b with q in 0..qmax, a ≥ 0, b ≤ 0 (stored as the min −b).

struct Affine {
  float a = 0, b = 0;
};

double affine_error(const float* x, const float* w, const uint8_t* q, int n, Affine f) {
  double e = 0;
  for (int i = 0; i < n; ++i) {
    const double r = double(f.a) * q[i] + f.b - x[i];
    e += w[i] * r * r;
  }
  return e;
}

// Least squares of x ≈ a·q + b for fixed levels, within the format's signs (a ≥ 0, b ≤ 0).
Affine fit_affine(const float* x, const float* w, const uint8_t* q, int n) {
  double sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
  for (int i = 0; i < n; ++i)
    sw += w[i], sq += w[i] * q[i], sqq += w[i] * q[i] * q[i], sx += w[i] * x[i], sqx += w[i] * q[i] * x[i];
  const double det = sw * sqq - sq * sq;  // zero when every level is equal
  double a = det > 0 ? (sw * sqx - sq * sx) / det : 0, b = det > 0 ? (sqq * sx - sq * sqx) / det : sx / sw;
  if (b > 0) b = 0, a = sqq > 0 ? sqx / sqq : 0;  // the offset must be a non-positive min
  if (a < 0) a = 0, b = std::min(0.0, sx / sw);
  return {float(a), float(b)};
}

void affine_levels(const float* x, int n, int qmax, Affine f, uint8_t* q) {
  const float inv = f.a > 0 ? 1.0f / f.a : 0.0f;
  for (int i = 0; i < n; ++i) q[i] = uint8_t(std::clamp(nearest_int((x[i] - f.b) * inv), 0, qmax));
}

// The real-valued (a, b) of one sub-block with the least squared error among the candidates:
// ranges (max − min)/(qmax + t) for t in −1…+1.5, each refitted to the levels it gives.
Affine search_affine(const float* x, const float* w, int n, int qmax) {
  const float lo = std::min(0.0f, *std::min_element(x, x + n)), hi = *std::max_element(x, x + n);
  if (hi <= lo) return {0, lo};
  Affine best{(hi - lo) / float(qmax), lo};  // the min/max candidate, as is
  uint8_t q[32];
  affine_levels(x, n, qmax, best, q);
  double best_err = affine_error(x, w, q, n, best);
  auto refit = [&](Affine f) {  // the least-squares fit to the levels f gives, and its error
    affine_levels(x, n, qmax, f, q);
    const Affine g = fit_affine(x, w, q, n);
    return std::pair{g, affine_error(x, w, q, n, g)};
  };
  for (int t = -10; t <= 15; ++t)
    if (const auto [f, e] = refit({(hi - lo) / (float(qmax) + 0.1f * float(t)), lo}); e < best_err) best_err = e, best = f;
  return refine(best, best_err, refit);
}

// The min/max fits of the 8 sub-blocks: scale (max − min)/qmax, min −min(x, 0).
void minmax_fits(const float* x, int qmax, Affine* fit) {
  for (int j = 0; j < 8; ++j) {
    const float lo = std::min(0.0f, *std::min_element(x + 32 * j, x + 32 * j + 32)), hi = *std::max_element(x + 32 * j, x + 32 * j + 32);
    fit[j] = {(hi - lo) / float(qmax), lo};
  }
}

// A super-block from real-valued sub-block fits: scales and mins to 6 bits (each sub-block takes
// the best of the neighbouring integers, as rounding the scale alone is not rounding the error),
// levels for the stored values, then (d, dmin) refitted jointly over the 256 values while that
// lowers the error. Returns the weighted squared error.
double encode_affine(const float* x, const float* w, int qmax, const Affine* fit, uint16_t* d_out, uint16_t* dmin_out, uint8_t* scales,
                     uint8_t* levels) {
  float max_a = 0, max_m = 0;
  for (int j = 0; j < 8; ++j) max_a = std::max(max_a, fit[j].a), max_m = std::max(max_m, -fit[j].b);
  float d = f16_round(max_a / 63.0f), dmin = f16_round(max_m / 63.0f);
  int sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = d > 0 ? std::min(63, nearest_int(fit[j].a / d)) : 0;
    m[j] = dmin > 0 ? std::min(63, nearest_int(-fit[j].b / dmin)) : 0;
  }
  // For the block scales (dd, dm): each sub-block's best (sc, m) within ±1 of the current ones,
  // its levels, and the total error.
  auto best_integers = [&](float dd, float dm, int* sc_io, int* m_io, uint8_t* q) {
    double total = 0;
    uint8_t trial[32];
    for (int j = 0; j < 8; ++j) {
      double best = INFINITY;
      int best_s = sc_io[j], best_m = m_io[j];
      for (int s = std::max(0, sc_io[j] - 1); s <= std::min(63, sc_io[j] + 1); ++s)
        for (int mm = std::max(0, m_io[j] - 1); mm <= std::min(63, m_io[j] + 1); ++mm) {
          const Affine f{dd * float(s), -dm * float(mm)};
          affine_levels(x + 32 * j, 32, qmax, f, trial);
          if (const double e = affine_error(x + 32 * j, w + 32 * j, trial, 32, f); e < best)
            best = e, best_s = s, best_m = mm, std::copy(trial, trial + 32, q + 32 * j);
        }
      sc_io[j] = best_s, m_io[j] = best_m, total += best;
    }
    return total;
  };
  double err = best_integers(d, dmin, sc, m, levels);
  for (int round = 0; round < 2; ++round) {
    // x_i ≈ d·u_i − dmin·v_i with u = sc·q and v = m (integers fixed): 2×2 normal equations.
    double uu = 0, uv = 0, vv = 0, ux = 0, vx = 0;
    for (int i = 0; i < kSuper; ++i) {
      const double u = double(sc[i / 32]) * levels[i], v = m[i / 32];
      uu += w[i] * u * u, uv += w[i] * u * v, vv += w[i] * v * v, ux += w[i] * u * x[i], vx += w[i] * v * x[i];
    }
    const double det = uu * vv - uv * uv;
    if (det <= 0) break;
    const float d2 = f16_round(float((ux * vv - vx * uv) / det)), dmin2 = f16_round(float((ux * uv - vx * uu) / det));
    if (!(d2 > 0 && dmin2 >= 0)) break;
    int sc2[8], m2[8];
    std::copy(sc, sc + 8, sc2), std::copy(m, m + 8, m2);
    uint8_t q2[kSuper];
    const double e2 = best_integers(d2, dmin2, sc2, m2, q2);
    if (e2 >= err) break;
    err = e2, d = d2, dmin = dmin2, std::copy(q2, q2 + kSuper, levels), std::copy(sc2, sc2 + 8, sc), std::copy(m2, m2 + 8, m);
  }
  *d_out = f32_to_f16(d);
  *dmin_out = f32_to_f16(dmin);
  pack_scale_min_k4(sc, m, scales);
  return err;
}

// ---- Q6_K: x ≈ a·q with q in −32..31 (a of either sign).

double symmetric_levels(const float* x, const float* w, int n, float a, int8_t* q) {
  const float inv = a != 0 ? 1.0f / a : 0.0f;
  double e = 0;
  for (int i = 0; i < n; ++i) {
    q[i] = int8_t(std::clamp(nearest_int(x[i] * inv), -32, 31));
    const double r = double(a) * q[i] - x[i];
    e += w[i] * r * r;
  }
  return e;
}

// Least squares of x ≈ a·q for fixed levels.
float fit_scale(const float* x, const float* w, const int8_t* q, int n) {
  double sxq = 0, sqq = 0;
  for (int i = 0; i < n; ++i) sxq += double(w[i]) * x[i] * q[i], sqq += double(w[i]) * q[i] * q[i];
  return sqq > 0 ? float(sxq / sqq) : 0;
}

// The scale of one 16-value sub-block: candidates that put its largest-magnitude value at level
// −32…−30 or 31…29, each refitted (a = Σxq / Σq²) to the levels it gives.
float search_symmetric(const float* x, const float* w, int n) {
  float xm = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > std::fabs(xm)) xm = x[i];
  if (xm == 0) return 0;
  float best = xm / 31.0f;
  int8_t q[16];
  double best_err = symmetric_levels(x, w, n, best, q);
  auto refit = [&](float a) {  // the least-squares scale for the levels a gives, and its error
    symmetric_levels(x, w, n, a, q);
    const float b = fit_scale(x, w, q, n);
    return std::pair{b, symmetric_levels(x, w, n, b, q)};
  };
  for (int t = 0; t <= 8; ++t)
    for (const float top : {-32.0f + 0.25f * float(t), 31.0f - 0.25f * float(t)})
      if (const auto [a, e] = refit(xm / top); e < best_err) best_err = e, best = a;
  return refine(best, best_err, refit);
}

}  // namespace

void kquant_affine_block_minmax(const float* x, int qmax, uint16_t* d, uint16_t* dmin, uint8_t* scales, uint8_t* levels) {
  float w[kSuper];
  importance(x, w);
  Affine fit[8];
  minmax_fits(x, qmax, fit);
  encode_affine(x, w, qmax, fit, d, dmin, scales, levels);
}

void kquant_affine_block(const float* x, int qmax, uint16_t* d, uint16_t* dmin, uint8_t* scales, uint8_t* levels) {
  float w[kSuper];
  importance(x, w);
  Affine fit[8];
  for (int j = 0; j < 8; ++j) fit[j] = search_affine(x + 32 * j, w + 32 * j, 32, qmax);
  const double err = encode_affine(x, w, qmax, fit, d, dmin, scales, levels);
  minmax_fits(x, qmax, fit);
  uint16_t d2, dmin2;
  uint8_t scales2[12], levels2[kSuper];
  if (encode_affine(x, w, qmax, fit, &d2, &dmin2, scales2, levels2) < err)
    *d = d2, *dmin = dmin2, std::copy(scales2, scales2 + 12, scales), std::copy(levels2, levels2 + kSuper, levels);
}

void kquant_symmetric_block(const float* x, uint16_t* d_out, int8_t* scales, uint8_t* levels) {
  float w[kSuper];
  importance(x, w);
  float a[16], max_a = 0;
  for (int s = 0; s < 16; ++s) a[s] = search_symmetric(x + 16 * s, w + 16 * s, 16), max_a = std::max(max_a, std::fabs(a[s]));
  int8_t q[kSuper], q2[kSuper];
  auto encode = [&](float d, int8_t* lv) {  // levels for the stored scales d·sc_s, and their error
    double e = 0;
    for (int s = 0; s < 16; ++s) e += symmetric_levels(x + 16 * s, w + 16 * s, 16, d * float(scales[s]), lv + 16 * s);
    return e;
  };
  float d = f16_round(max_a / 127.0f);
  for (int s = 0; s < 16; ++s) scales[s] = int8_t(d > 0 ? std::clamp(nearest_int(a[s] / d), -127, 127) : 0);
  double err = encode(d, q);
  // Refit d over the super-block for the stored integers: x_i ≈ d·(sc·q)_i.
  double uu = 0, ux = 0;
  for (int i = 0; i < kSuper; ++i) {
    const double u = double(scales[i / 16]) * q[i];
    uu += w[i] * u * u, ux += w[i] * u * x[i];
  }
  if (uu > 0)
    if (const float d2 = f16_round(float(ux / uu)); d2 > 0)
      if (const double e2 = encode(d2, q2); e2 < err) err = e2, d = d2, std::copy(q2, q2 + kSuper, q);
  *d_out = f32_to_f16(d);
  for (int i = 0; i < kSuper; ++i) levels[i] = uint8_t(q[i] + 32);
}

}  // namespace distill::ref

#include "formats/topk_codec.h"

#include "core/dtype.h"
#include "core/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace distill {

void BitWriter::put(uint64_t value, int bits) {
  for (int b = bits - 1; b >= 0; --b) {
    if (used_ == 8) bytes_.push_back(0), used_ = 0;
    bytes_.back() |= uint8_t(((value >> b) & 1) << (7 - used_));
    ++used_;
  }
}

void BitWriter::put_rice(uint64_t value, int k) {
  const uint64_t q = value >> k;  // unary quotient: q ones and a zero
  for (uint64_t i = 0; i < q; ++i) put(1, 1);
  put(0, 1);
  put(value & ((uint64_t(1) << k) - 1), k);
}

void BitWriter::flush_to(std::string& out) {
  out.append(reinterpret_cast<const char*>(bytes_.data()), bytes_.size());
  bytes_.clear();
  used_ = 8;
}

uint64_t BitReader::get(int bits) {
  uint64_t v = 0;
  for (int i = 0; i < bits; ++i) {
    if (p_ >= end_) fail("top-k block ends early");
    v = v << 1 | ((*p_ >> (7 - bit_)) & 1);
    if (++bit_ == 8) bit_ = 0, ++p_;
  }
  return v;
}

uint64_t BitReader::get_rice(int k) {
  uint64_t q = 0;
  while (get(1)) {
    if (++q > (uint64_t(1) << 32)) fail("top-k block: a run of ones that no value needs");
  }
  return q << k | get(k);
}

const unsigned char* BitReader::align() {
  if (bit_ != 0) bit_ = 0, ++p_;
  return p_;
}

namespace {

// The Rice parameter that codes `values` in the fewest bits (0..max_k).
int best_rice(const std::vector<uint64_t>& values, int max_k) {
  int best = 0;
  uint64_t best_bits = UINT64_MAX;
  for (int k = 0; k <= max_k; ++k) {
    uint64_t bits = 0;
    for (uint64_t v : values) bits += (v >> k) + 1 + uint64_t(k);
    if (bits < best_bits) best_bits = bits, best = k;
  }
  return best;
}

int bits_for(int n) {  // bits to write a number in [0, n)
  int b = 0;
  while ((1 << b) < n) ++b;
  return b;
}

// TDR3's log-prob codes: −logp as f16's magnitude bits (clamped to [0, 64]). f16's order is the
// numbers' order, so sorted log-probs have sorted codes, and the codes are f16 exactly.
constexpr uint32_t kF16Max = 0x5400;  // f16 64.0
constexpr int kF16Bits = 15;

uint32_t f16_code(float logp) {
  float x = std::clamp(-logp, 0.0f, 64.0f);
  if (std::isnan(x)) x = 64.0f;
  return f32_to_f16(x) & 0x7fff;
}

// A code's value and its f16 step there, both in units of 2^-24 (f16's finest step): exact integers,
// so the writer and every reader derive the same Rice parameters on any machine.
int64_t f16_units(uint32_t c) { return c >> 10 == 0 ? int64_t(c) : int64_t(1024 + (c & 1023)) << ((c >> 10) - 1); }
int64_t f16_step_units(uint32_t c) { return c >> 10 == 0 ? 1 : int64_t(1) << ((c >> 10) - 1); }

// The Rice parameter of gap i ≥ 2 of the sorted codes m: the mean gap in nats of up to six gaps
// before it, counted in steps of m[i−1]'s f16 exponent, times 0.7 (gaps shrink down a top-k, and a
// parameter a little low costs less than one too high). Saves ≈ 22 bits per position at k = 20 over
// one parameter for all gaps (measured on the language-model-like top-k of test_teacher_dataset).
int predicted_rice(const uint32_t* m, int i) {
  const int from = std::max(1, i - 6);
  const int64_t nats = f16_units(m[i - 1]) - f16_units(m[from - 1]);
  const int64_t q = nats * 7 / (10 * int64_t(i - from) * f16_step_units(m[i - 1])) + 1;
  int k = 0;
  while (k < 15 && (int64_t(2) << k) <= q) ++k;  // the largest k with 2^(k+1) ≤ q
  return k;
}

// TDR2's codes (read only): f16 below 1 nat, steps of 1/1024 nat from 1 to 64, in 17 bits, and one
// Rice parameter (4 bits) for all gaps.
constexpr uint32_t kV2One = 0x3c00;  // f16 1.0
constexpr uint32_t kV2Max = kV2One + 63 * 1024;
float v2_logprob(uint32_t code) {
  return code < kV2One ? -f16_to_f32(uint16_t(code)) : -float(1.0 + double(code - kV2One) / 1024.0);
}

// The Lehmer code of a permutation of n (n ≤ 20: one integer below n!, in ceil(log2 n!) bits;
// larger: digit i in ceil(log2(n − i)) bits).
int factorial_bits(int n) {
  double l = 0;
  for (int i = 2; i <= n; ++i) l += std::log2(double(i));
  return int(std::ceil(l - 1e-9));
}

void put_permutation(BitWriter& w, const std::vector<int>& digits) {
  const int n = int(digits.size());
  if (n <= 20) {
    uint64_t x = 0;
    for (int i = 0; i < n; ++i) x = x * uint64_t(n - i) + uint64_t(digits[size_t(i)]);  // mixed radix n, n−1, …, 1
    w.put(x, factorial_bits(n));
  } else {
    for (int i = 0; i < n - 1; ++i) w.put(uint64_t(digits[size_t(i)]), bits_for(n - i));
  }
}

std::vector<int> get_permutation(BitReader& r, int n) {
  std::vector<int> digits(static_cast<size_t>(n), 0);
  if (n <= 20) {
    uint64_t x = r.get(factorial_bits(n));
    for (int i = n - 1; i >= 0; --i) digits[size_t(i)] = int(x % uint64_t(n - i)), x /= uint64_t(n - i);
    if (x != 0) fail("top-k block: a permutation code beyond n!");
  } else {
    for (int i = 0; i < n - 1; ++i) digits[size_t(i)] = int(r.get(bits_for(n - i)));
  }
  for (int i = 0; i < n; ++i)
    if (digits[size_t(i)] >= n - i) fail("top-k block: a rank beyond the ids left");
  return digits;
}

}  // namespace

void encode_topk(BitWriter& w, const int32_t* ids, const float* logp, int k, int32_t chosen) {
  std::vector<int> by_p(static_cast<size_t>(k));
  std::iota(by_p.begin(), by_p.end(), 0);
  std::vector<uint32_t> m(static_cast<size_t>(k));
  for (int i = 0; i < k; ++i) m[size_t(i)] = f16_code(logp[i]);
  std::stable_sort(by_p.begin(), by_p.end(), [&](int a, int b) { return m[size_t(a)] < m[size_t(b)]; });
  // 1. log-probs, likeliest first: the first code, then the gaps Rice-coded: the first gap with a
  //    parameter written here, the others with predicted_rice's
  std::vector<uint32_t> sorted(static_cast<size_t>(k));
  for (int i = 0; i < k; ++i) sorted[size_t(i)] = m[size_t(by_p[size_t(i)])];
  const int k1 = k > 1 ? best_rice({uint64_t(sorted[1] - sorted[0])}, 15) : 0;
  w.put(sorted[0], kF16Bits);
  w.put(uint64_t(k1), 4);
  for (int i = 1; i < k; ++i) w.put_rice(sorted[size_t(i)] - sorted[size_t(i - 1)], i == 1 ? k1 : predicted_rice(sorted.data(), i));
  // 2. the token the teacher's text has here, when it is among the k: its place in likelihood
  //    order instead of its id (the reader knows the id from the completion)
  int chosen_at = -1;
  for (int i = 0; i < k; ++i)
    if (ids[by_p[size_t(i)]] == chosen) chosen_at = i;
  w.put(chosen_at >= 0, 1);
  if (chosen_at >= 0) w.put_rice(uint64_t(chosen_at), 1);  // usually the likeliest: 2 bits
  // 3. the other ids, ascending: the first and the gaps (distinct: gaps ≥ 1, stored − 1)
  std::vector<int> rest;  // indices into ids, likelihood order, without the chosen one
  for (int i = 0; i < k; ++i)
    if (i != chosen_at) rest.push_back(by_p[size_t(i)]);
  std::vector<int> by_id = rest;
  std::sort(by_id.begin(), by_id.end(), [&](int a, int b) { return ids[a] < ids[b]; });
  for (size_t i = 0; i < by_id.size(); ++i)
    if (ids[by_id[i]] < 0 || (i > 0 && ids[by_id[i]] == ids[by_id[i - 1]]))
      fail("internal: top-k ids must be distinct and non-negative (got {})", ids[by_id[i]]);
  std::vector<uint64_t> id_gaps;
  for (size_t i = 0; i < by_id.size(); ++i)
    id_gaps.push_back(i == 0 ? uint64_t(ids[by_id[0]]) : uint64_t(ids[by_id[i]] - ids[by_id[i - 1]] - 1));
  const int ki = best_rice(id_gaps, 31);
  w.put(uint64_t(ki), 5);
  for (uint64_t g : id_gaps) w.put_rice(g, ki);
  // 4. which id goes with which log-prob: for each entry in likelihood order, its rank among the
  //    ids not yet used (a Lehmer code)
  std::vector<int> rank_of(static_cast<size_t>(k), 0);
  for (size_t r = 0; r < by_id.size(); ++r) rank_of[size_t(by_id[r])] = int(r);
  std::vector<char> used(by_id.size(), 0);
  std::vector<int> digits;
  for (int e : rest) {
    const int r = rank_of[size_t(e)];
    int digit = 0;
    for (int j = 0; j < r; ++j) digit += !used[size_t(j)];
    used[size_t(r)] = 1;
    digits.push_back(digit);
  }
  put_permutation(w, digits);
}

void decode_topk(BitReader& r, int32_t* ids, float* logp, int k, int32_t chosen, TopkFormat format) {
  const bool v2 = format == TopkFormat::V2;
  const uint32_t max_code = v2 ? kV2Max : kF16Max;
  std::vector<uint32_t> m(static_cast<size_t>(k));
  m[0] = uint32_t(r.get(v2 ? 17 : kF16Bits));
  if (m[0] > max_code) fail("top-k block: a log-prob below −64");
  const int k1 = int(r.get(4));
  for (int i = 1; i < k; ++i) {
    const uint64_t v = uint64_t(m[size_t(i - 1)]) + r.get_rice(v2 || i == 1 ? k1 : predicted_rice(m.data(), i));
    if (v > max_code) fail("top-k block: a log-prob below −64");
    m[size_t(i)] = uint32_t(v);
  }
  int chosen_at = -1;
  if (r.get(1)) {
    const uint64_t at = r.get_rice(1);
    if (at >= uint64_t(k) || chosen < 0) fail("top-k block: the text's token at an impossible place");
    chosen_at = int(at);
  }
  const int n = chosen_at >= 0 ? k - 1 : k;
  const int ki = int(r.get(5));
  std::vector<int64_t> sorted_ids(static_cast<size_t>(n));
  int64_t id = -1;
  for (int i = 0; i < n; ++i) {
    const uint64_t g = r.get_rice(ki);
    id = i == 0 ? int64_t(g) : id + 1 + int64_t(g);
    if (g > uint64_t(INT32_MAX) || id > INT32_MAX) fail("top-k block: an id beyond 2^31");
    sorted_ids[size_t(i)] = id;
  }
  const std::vector<int> digits = get_permutation(r, n);
  std::vector<int> left(static_cast<size_t>(n));
  std::iota(left.begin(), left.end(), 0);
  for (int i = 0, d = 0; i < k; ++i) {
    logp[i] = v2 ? v2_logprob(m[size_t(i)]) : -f16_to_f32(uint16_t(m[size_t(i)]));
    if (i == chosen_at) {
      ids[i] = chosen;
      continue;
    }
    const int digit = digits[size_t(d++)];
    ids[i] = int32_t(sorted_ids[size_t(left[size_t(digit)])]);
    left.erase(left.begin() + digit);
  }
}

}  // namespace distill

// Compact storage of one position's teacher top-k (ids + log-probs), for teacher datasets
// (formats/teacher_dataset.h, record format TDR3). Lossless to f16 log-probs: each is kept as the
// f16 of its value (clamped to −64).
//
// Bit-packed, per position:
//   entries sorted by log-prob, likeliest first; the f16 magnitudes of their log-probs
//   m_0 ≤ m_1 ≤ … (f16 bit patterns are ordered as the numbers are): m_0 in 15 bits, then the k−1
//   gaps Rice-coded: the first with a parameter written in 4 bits, each later one with a parameter
//   predicted from the gaps before it (predicted_rice: their mean in nats, in f16 steps where it is);
//   1 bit: is the token of the teacher's text at this position among the k (it usually is)? If so,
//   its place in likelihood order (Rice, parameter 1: 2 bits for the likeliest) stands for its id;
//   the other ids sorted ascending: the first id and the gaps Rice-coded (parameter in 5 bits);
//   the permutation from likelihood order to id order as a Lehmer code: one integer below n! in
//   ceil(log2 n!) bits for n ≤ 20 (62 bits at 20), else digit by digit.
// A set of k ids from a vocabulary of V costs about k·(log2(V/k) + 1.5) bits plus log2(k!) for
// their order. Measured sizes per vocabulary are in test_teacher_dataset (TDR1 took ≈ 78 bytes at
// k = 20, TDR2 — a 1/1024-nat grid, finer than f16 below −2, and one Rice parameter for all
// log-prob gaps — 68 at V = 152 000).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace distill {

class BitWriter {
public:
  void put(uint64_t value, int bits);  // the low `bits` bits, most significant first
  void put_rice(uint64_t value, int k);
  // Pads to a whole byte and appends the bytes to out.
  void flush_to(std::string& out);

private:
  std::vector<uint8_t> bytes_;
  int used_ = 8;  // bits used in the last byte
};

class BitReader {
public:
  BitReader(const unsigned char* p, const unsigned char* end) : p_(p), end_(end) {}
  uint64_t get(int bits);  // throws distill::Error past the end
  uint64_t get_rice(int k);
  // Skips to the next byte boundary; returns the position there.
  const unsigned char* align();

private:
  const unsigned char* p_;
  const unsigned char* end_;
  int bit_ = 0;  // bits consumed in *p_
};

// One position: k ids (distinct, ≥ 0: throws otherwise) and their log-probs. `chosen`: the token
// the teacher's text has at this position (−1: none), stored by its place when among the k.
void encode_topk(BitWriter& w, const int32_t* ids, const float* logp, int k, int32_t chosen);
// Reads what encode_topk wrote (TopkFormat::V3; V2: what TDR2's encoder wrote); throws
// distill::Error for a block no encoder writes.
enum class TopkFormat { V2, V3 };
void decode_topk(BitReader& r, int32_t* ids, float* logp, int k, int32_t chosen, TopkFormat format);

}  // namespace distill

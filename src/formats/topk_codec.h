// Compact storage of one position's teacher top-k (ids + log-probs), for teacher datasets
// (formats/teacher_dataset.h, record format TDR2). Lossless to f16 log-probs and better: a
// log-prob is kept on a grid at least as fine as f16's everywhere — f16 values above −1 nat, steps
// of 1/1024 nat from −1 to −64 (clamped there) — so it is read back within 0.0005 nats (f16 alone
// would lose up to 0.002 at −5).
//
// Bit-packed, per position:
//   entries sorted by log-prob, likeliest first; their grid codes m_0 ≤ m_1 ≤ … (the grid is
//   monotonic): m_0 in 17 bits, then the k−1 gaps Rice-coded with a parameter (4 bits) chosen for
//   this position;
//   1 bit: is the token of the teacher's text at this position among the k (it usually is)? If so,
//   its place in likelihood order (Rice, parameter 1: 2 bits for the likeliest) stands for its id;
//   the other ids sorted ascending: the first id and the gaps Rice-coded (parameter in 5 bits);
//   the permutation from likelihood order to id order as a Lehmer code: one integer below n! in
//   ceil(log2 n!) bits for n ≤ 20 (62 bits at 20), else digit by digit.
// A set of k ids from a vocabulary of V costs about k·(log2(V/k) + 1.5) bits plus log2(k!) for
// their order; sorted log-probs of a language model's top-20 differ by a few grid steps each.
// Measured sizes per vocabulary are in test_teacher_dataset (TDR1 took ≈ 78 bytes at k = 20).
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
// Reads what encode_topk wrote (log-probs as their f16 values); throws distill::Error for a block
// no encoder writes.
void decode_topk(BitReader& r, int32_t* ids, float* logp, int k, int32_t chosen);

}  // namespace distill

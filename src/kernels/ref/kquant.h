// Error-minimising scale search for the K-quant writers (Q4_K, Q5_K, Q6_K). The block layouts are
// in kernels/quant_blocks.h; these functions choose the levels and scales of one 256-value
// super-block, and quantize_row packs them.
#pragma once

#include <cstdint>

namespace distill::ref {

// Q4_K (qmax 15) / Q5_K (qmax 31): x ≈ d·sc_j·q − dmin·m_j per sub-block j of 32, q in 0..qmax,
// sc_j and m_j 6-bit. Writes d and dmin (f16 bits), the 12 packed scale bytes and the 256 levels.
void kquant_affine_block(const float* x, int qmax, uint16_t* d, uint16_t* dmin, uint8_t* scales, uint8_t* levels);

// Q6_K: x ≈ d·sc_s·(q − 32) per sub-block s of 16, q in 0..63, sc_s int8. Writes d (f16 bits),
// the 16 scales and the 256 levels (0..63).
void kquant_symmetric_block(const float* x, uint16_t* d, int8_t* scales, uint8_t* levels);

// The same encoding from min/max sub-block fits (scale (max − min)/qmax, min −min(x, 0)) instead of
// the searched ones: one of the candidates kquant_affine_block compares, and the tests' baseline.
void kquant_affine_block_minmax(const float* x, int qmax, uint16_t* d, uint16_t* dmin, uint8_t* scales, uint8_t* levels);

}  // namespace distill::ref

// KVCache: keys and values of every layer for a number of sequence slots, each holding up to
// n_ctx positions. Keys are stored after RoPE, so decoding never re-reads or re-rotates the
// prompt. Elements are f16 by default (half the memory, and half the bytes each decode step reads
// at depth; rounded once when stored, as llama.cpp's default cache) or f32 (`distill --kv-cache
// f32 …`, and the full-sequence scoring of Decoder::forward_full).
//
// A sliding-window layer (GPT-OSS's even layers, Mistral's every layer) only ever attends to its
// last `window` positions, so its slots keep window + slack rows instead of n_ctx: row r of slot
// s holds position first_pos[il][s] + r. Before a forward writes positions lo..hi of a slot,
// make_room slides the rows the window of position lo still needs to the front when hi would
// fall past the last row (a copy of window rows every `slack` positions). A forward may therefore
// add at most `slack` positions per slot (max_run; the Decoder cuts longer batches into pieces),
// and a slot can be continued from position n only while it still holds n's window (holds_prefix).
#pragma once

#include "core/tensor.h"
#include "model/config.h"

#include <vector>

namespace distill {

// The element type new caches get unless told otherwise: F16, or what set_default_kv_cache_type
// chose (the CLI's --kv-cache, once, before any work).
DType default_kv_cache_type();
void set_default_kv_cache_type(DType t);  // F16 or F32

struct KVCache {
  // Positions past its window a sliding layer's slot keeps room for (so that a prefill of up to
  // this many tokens per slot needs no copy in between).
  static constexpr int64_t kDefaultSlack = 512;

  KVCache() = default;
  KVCache(const ModelConfig& c, int64_t n_slots, int64_t n_ctx, DType type = default_kv_cache_type(),
          int64_t window_slack = kDefaultSlack);

  int64_t n_slots = 0;
  int64_t n_ctx = 0;
  DType type = DType::F16;
  std::vector<Tensor> k, v;       // per layer, [n_slots, rows[il], n_kv_head, head_dim] of `type`
  std::vector<int64_t> rows;      // per layer: positions a slot keeps (n_ctx unless windowed)
  std::vector<int64_t> window;    // per layer: its attention window (0 = the whole context)
  std::vector<std::vector<int64_t>> first_pos;  // per layer and slot: the position row 0 holds

  bool windowed(size_t il) const { return rows[il] < n_ctx; }
  // Most positions of one slot a single forward may write: n_ctx, or the smallest slack.
  int64_t max_run() const;
  // Makes every windowed layer of `slot` ready for positions lo..hi (hi − lo < max_run()): keeps
  // positions lo − window + 1 .. lo − 1, sliding them to the front when hi does not fit.
  // Throws when the slot no longer holds them (continued from before what it kept).
  void make_room(int64_t slot, int64_t lo, int64_t hi);
  // Whether a new token at position n of `slot` finds every earlier position it attends to.
  bool holds_prefix(int64_t slot, int64_t n) const;
  // Copies what a continuation from position n needs of slot `from` into slot `to` (positions
  // 0..n−1, or of a windowed layer the rows from `from`'s first kept position). False, copying
  // nothing, when `from` no longer holds them.
  bool copy_prefix(int64_t from, int64_t to, int64_t n);

  // Byte offset of (slot, position) in layer il's k[il] / v[il].
  size_t offset(size_t il, int64_t slot, int64_t pos) const {
    return size_t(slot * rows[il] + pos - first_pos[il][size_t(slot)]) * row_bytes();
  }
  size_t nbytes() const;
  // Bytes of one position of one layer's keys (or values).
  size_t row_bytes() const { return row_bytes_; }

private:
  size_t row_bytes_ = 0;
};

// Positions a slot of layer il keeps in a cache of n_ctx: the context, or the layer's sliding
// window plus the slack when that is less.
int64_t kv_rows_per_slot(const ModelConfig& c, int64_t il, int64_t n_ctx, int64_t window_slack = KVCache::kDefaultSlack);

// What a cache of n_slots × n_ctx positions of this model takes, in bytes, without making it.
size_t kv_cache_bytes(const ModelConfig& c, int64_t n_slots, int64_t n_ctx, DType type = default_kv_cache_type(),
                      int64_t window_slack = KVCache::kDefaultSlack);

}  // namespace distill

// What running a model takes in memory, worked out from its files' headers before any weight is
// read: `distill info` prints it, and run / serve / eval print it (warning when it exceeds the
// memory available) before they load. The terms follow what loading does (model.cpp,
// gguf_model.cpp, gpt_oss_hf.cpp): matrices are used in place from the mapped file; vectors stored
// in another type are widened to f32, Llama-family GGUF q/k rows permuted and gpt-oss's MXFP4
// expert stacks repacked into memory the model owns; on AVX-512, Q8_0/Q4_0/Q4_K matrices get int8
// panels for prefill (kernels.h: prepared_bytes_for); the KV cache keeps a sliding layer's window
// only (model/kv_cache.h).
#pragma once

#include "model/config.h"
#include "model/kv_cache.h"

#include <cstdint>
#include <string>

namespace distill {

struct MemoryPlan {
  ModelConfig config;
  size_t mapped = 0;    // weights used in place from the file (paged in as read, evictable)
  size_t copied = 0;    // weights copied or repacked into the model's own memory at load
  size_t prepared = 0;  // the active kernels' load-time form of the weights (int8 panels)
  size_t kv_cache = 0;  // n_slots × n_ctx positions
  size_t buffers = 0;   // the decoder's activations for a batch of up to 512 tokens
  int64_t n_ctx = 0, n_slots = 0;
  DType kv_type = DType::F16;
  size_t total() const { return mapped + copied + prepared + kv_cache + buffers; }
};

// The plan for `path` (model directory or GGUF) holding n_slots sequences of up to n_ctx
// positions (capped at the model's context length).
MemoryPlan plan_memory(const std::string& path, int64_t n_ctx, int64_t n_slots = 1, DType kv = default_kv_cache_type());
// Whether to build the kernels' load-time panels: they speed prefill up but are not needed, so not
// when the plan with them exceeds `avail` bytes (0: unknown, build them).
bool plan_allows_panels(const MemoryPlan& p, size_t avail);
// One line: the terms, their total and the memory available.
std::string describe(const MemoryPlan& p);
// /proc/meminfo's MemAvailable in bytes (0 when unknown).
size_t available_memory();

}  // namespace distill

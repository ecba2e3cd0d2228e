// Forward benchmark: prefill and decode tokens/s of random-weight Llama models (15M and 134M
// shapes) with every weight type, in memory (no files). Prints achieved GFLOP/s (prefill) and GB/s
// of weights streamed (decode) against the machine's own read bandwidth (a 1 GiB streaming sum),
// the limit decode approaches. The comparison with llama.cpp is bench/vs_llamacpp.sh's: same
// files, same run — never a figure written down elsewhere. Decode is timed from an empty context, as llama-bench's tg128 (the
// peer figures) is, and again after the prompt. Run on a quiet machine: a second job on the other core halves every number.
//
//   bench_forward [--threads N] [--prompt 512] [--decode 128] [--only 15m|110m] [--types f32,q8_0,...]
#include "core/system.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "convert/export.h"
#include "model/decoder.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cctype>
#include <cstring>
#include <vector>
#include <string>

using namespace distill;

namespace {

struct BenchShape {
  const char* name;
  int64_t dim, layers, heads, ffn, vocab;
  bool tied;
};

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Result {
  double prefill_tps, decode_tps, decode_after_prompt_tps;
};

Result run(const Model& m, int n_prompt, int n_decode) {
  Decoder dec(m);
  KVCache cache(m.config, 1, n_prompt + n_decode);
  Batch b;
  for (int i = 0; i < n_prompt; ++i) b.add(int32_t((i * 7919 + 1) % m.config.n_vocab), i, 0, i == n_prompt - 1);
  dec.forward(b, cache);  // warm-up: page in the weights, grow the buffers
  double t0 = now();
  const float* logits = dec.forward(b, cache);
  const double prefill = now() - t0;
  // Decode n_decode tokens greedily from position `start` (0: an empty context, as llama-bench's
  // tg128 measures; n_prompt: after the prompt, where attention reads 512+ cached positions).
  auto decode = [&](int start) {
    const double t = now();
    for (int i = 0; i < n_decode; ++i) {
      const int32_t next = int32_t(std::max_element(logits, logits + m.config.n_vocab) - logits);
      b.clear();
      b.add(next, start + i, 0, true);
      logits = dec.forward(b, cache);
    }
    return n_decode / (now() - t);
  };
  const double after_prompt = decode(n_prompt);
  const double from_empty = decode(0);  // overwrites positions 0.. of the cache: a fresh context
  return {n_prompt / prefill, from_empty, after_prompt};
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, n_prompt = 512, n_decode = 128;
  std::string only, types = "f32,f16,bf16,q8_0,q4_0,q4_k,q6_k";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--prompt")) n_prompt = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--decode")) n_decode = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--only")) only = argv[i + 1];
    else if (!std::strcmp(argv[i], "--types")) types = argv[i + 1];
  }
  set_num_threads(threads);
  std::printf("bench_forward: %d threads, %s kernels, prefill %d tokens, decode %d tokens\n", num_threads(),
              kernel_variant_name(active_kernel_variant()), n_prompt, n_decode);
  const double bw = measure_read_bandwidth();
  std::printf("memory read bandwidth: %.1f GB/s (1 GiB parallel sum)\n", bw);
  std::printf("%-6s %-5s %8s %8s | %10s %8s | %10s %7s %7s | %s\n", "model", "dtype", "params", "MB", "prefill t/s",
              "GFLOP/s", "decode t/s", "GB/s", "of bw", "decode after prompt");

  const BenchShape shapes[] = {
      {"15m", 288, 6, 6, 768, 32000, true},
      {"110m", 768, 12, 12, 2048, 32000, false},
  };
  for (const BenchShape& s : shapes) {
    if (!only.empty() && only != s.name) continue;
    ModelConfig c;
    c.model_type = "llama";
    c.n_vocab = s.vocab, c.n_embd = s.dim, c.n_ff = s.ffn, c.n_layer = s.layers, c.n_head = s.heads;
    c.n_kv_head = s.heads, c.head_dim = s.dim / s.heads, c.tie_word_embeddings = s.tied;
    c.max_position_embeddings = n_prompt + n_decode;
    const Model base = Model::random(c, DType::F32, 1);
    for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
      std::string lower(dtype_name(dt));
      for (char& ch : lower) ch = char(std::tolower(ch));
      if (types.find(lower) == std::string::npos) continue;
      const Model m = dt == DType::F32 ? base : dtype_is_quantized(dt) ? quantized(base, dt) : Model::random(c, dt, 1);
      const Result r = run(m, n_prompt, n_decode);
      // Weights read per decode step: every linear layer plus the head (the embedding lookup
      // reads one row). Prefill computes logits for its last token only, so its FLOPs are the
      // layers' 2 × parameters per token (attention scores not counted).
      const double head_params = double(c.n_vocab * c.n_embd);
      const double layer_params = double(c.n_layer) * double(c.n_embd * (c.q_dim() + 2 * c.kv_dim()) +
                                                             c.q_dim() * c.n_embd + 3 * c.n_embd * c.n_ff);
      const double bytes_per_token = double(dtype_bytes(dt, int64_t(layer_params + head_params)));
      const double prefill_gflops = 2.0 * layer_params * r.prefill_tps / 1e9;
      const double decode_gbs = bytes_per_token * r.decode_tps / 1e9;
      std::printf("%-6s %-5s %7.1fM %8.0f | %10.0f %8.1f | %10.1f %7.1f %6.0f%% | %.1f\n", s.name,
                  std::string(dtype_name(dt)).c_str(), double(c.n_params()) / 1e6, bytes_per_token / 1e6,
                  r.prefill_tps, prefill_gflops, r.decode_tps, decode_gbs, 100.0 * decode_gbs / bw, r.decode_after_prompt_tps);
    }
  }
  std::printf("decode: %d tokens from an empty context (llama-bench's tg%d); 'decode after prompt': the same after the %d-token prompt\n"
              "against llama.cpp: bench/vs_llamacpp.sh runs both engines on the same files in one run\n",
              n_decode, n_decode, n_prompt);
  return 0;
}

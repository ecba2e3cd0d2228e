// Training-step benchmark: tokens/s of a full step (forward + cross-entropy + backward + AdamW)
// and the model FLOP utilisation: (6 × matmul parameters + attention FLOPs) per token over the
// machine's sgemm peak, measured here with a 2048³ OpenBLAS sgemm. The shapes are those of the
// PyTorch peer (../shared/peers/torch_train_bench.py: stories15m, gqa30m); bench/vs_pytorch.sh runs
// both in one session and prints the ratio. No peer figure is written here.
//
//   bench_train [--threads N] [--steps S] [--only stories15m|gqa30m] [--precision f32|bf16] [--json]
// (--precision bf16: training's bf16 products (TrainingPass's bf16_matmuls); MFU stays against
// the f32 sgemm peak)
#include "core/rng.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "train/adamw.h"
#include "train/losses.h"
#include "train/param_arena.h"
#include "train/training_pass.h"

#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace distill;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double measure_sgemm_peak() {
  const int n = 2048;
  std::vector<float> a(size_t(n) * n, 1.0f), b(size_t(n) * n, 0.5f), c(size_t(n) * n);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  double best = 0;
  for (int i = 0; i < 3; ++i) {
    const double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    best = std::max(best, 2.0 * n * n * double(n) / (now() - t0) / 1e9);
  }
  return best;
}

struct BenchShape {
  const char* name;
  int64_t dim, layers, heads, kv_heads, ffn, vocab, batch, seq;
  bool tied;
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, steps = 5;
  std::string only;
  bool json = false, bf16 = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) json = true;
    else if (i + 1 >= argc) return std::fprintf(stderr, "bench_train: %s needs a value\n", argv[i]), 2;
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--only")) only = argv[++i];
    else if (!std::strcmp(argv[i], "--precision")) {
      const std::string p = argv[++i];
      if (p != "f32" && p != "bf16") return std::fprintf(stderr, "bench_train: --precision %s: f32 or bf16\n", p.c_str()), 2;
      bf16 = p == "bf16";
    }
    else return std::fprintf(stderr, "bench_train: unknown option %s\n", argv[i]), 2;
  }
  set_num_threads(threads);
  const double peak = measure_sgemm_peak();
  if (!json) {
    std::printf("bench_train: %d threads, sgemm peak %.1f GFLOP/s (2048³), %d timed steps after 1 warm-up, %s products\n",
                num_threads(), peak, steps, bf16 ? "bf16" : "f32");
    std::printf("%-10s %-9s %8s | %9s %8s %8s %6s\n", "model", "batch", "params", "tokens/s", "ms/step", "GFLOP/s", "MFU");
  }
  const BenchShape shapes[] = {  // as torch_train_bench.py's CONFIGS
      {"stories15m", 288, 6, 6, 6, 768, 32000, 8, 256, true},
      {"gqa30m", 512, 8, 8, 4, 1376, 8192, 4, 512, false},
  };
  for (const BenchShape& s : shapes) {
    if (!only.empty() && only != s.name) continue;
    ModelConfig c;
    c.model_type = "llama";
    c.n_vocab = s.vocab, c.n_embd = s.dim, c.n_ff = s.ffn, c.n_layer = s.layers, c.n_head = s.heads;
    c.n_kv_head = s.kv_heads, c.head_dim = s.dim / s.heads, c.tie_word_embeddings = s.tied;
    Model m = Model::random(c, DType::F32, 1);
    ParamArena arena = ParamArena::adopt(m);
    TrainingPass pass(m, s.batch, s.seq, false, 0, bf16);
    AdamW opt(arena, AdamWSettings{});
    Tensor grads = arena.new_buffer();
    ModelWeights g = arena.views(grads);
    const int64_t N = s.batch * s.seq;
    std::vector<int32_t> ids(static_cast<size_t>(N)), targets(static_cast<size_t>(N));
    Rng rng(7);
    for (int64_t i = 0; i < N; ++i) ids[size_t(i)] = int32_t(rng.next_u64() % uint64_t(c.n_vocab));
    for (int64_t i = 0; i < N; ++i) targets[size_t(i)] = ids[size_t((i + 1) % N)];
    double t_total = 0;
    for (int step = 0; step <= steps; ++step) {
      const double t0 = now();
      std::memset(grads.raw(), 0, grads.nbytes());
      pass.forward_backward(ids.data(), [&](int64_t r0, int64_t n, const float* logits, float* d) {
        cross_entropy_backward(d, logits, targets.data() + r0, n, c.n_vocab);  // the chunk's mean...
        for (int64_t i = 0; i < n * c.n_vocab; ++i) d[i] *= float(n) / float(N);  // ...as its share of the batch's
      }, g);
      clip_grad_norm(grads.data<float>(), arena.size(), 1.0);
      opt.step(arena.data(), grads.data<float>(), 1e-4f);
      if (step > 0) t_total += now() - t0;
    }
    const double tps = double(N) * steps / t_total;
    // 6 FLOPs per matmul parameter per token (forward 2, backward 4), head included, embedding
    // lookup not; attention: QK^T and PV, forward and backward = 6 × 2 × T × q_dim per layer per
    // token, counted for the full T×T products we compute.
    const double matmul_params = double(c.n_layer) * double(c.n_embd * (c.q_dim() + 2 * c.kv_dim()) +
                                                            c.q_dim() * c.n_embd + 3 * c.n_embd * c.n_ff) +
                                 double(c.n_vocab * c.n_embd);
    const double attn_flops = 6.0 * 2.0 * double(s.seq) * double(c.q_dim()) * double(c.n_layer);
    const double gflops = (6.0 * matmul_params + attn_flops) * tps / 1e9;
    if (json)
      std::printf("{\"config\": \"%s\", \"params\": %lld, \"batch\": %lld, \"seq\": %lld, \"threads\": %d, "
                  "\"precision\": \"%s\", \"tokens_per_s\": %.1f, \"mfu\": %.3f}\n",
                  s.name, (long long)c.n_params(), (long long)s.batch, (long long)s.seq, num_threads(), bf16 ? "bf16" : "f32",
                  tps, gflops / peak);
    else
      std::printf("%-10s %4lldx%-4lld %7.1fM | %9.0f %8.1f %8.1f %5.1f%%\n", s.name, (long long)s.batch, (long long)s.seq,
                  double(c.n_params()) / 1e6, tps, 1000.0 * t_total / steps, gflops, 100.0 * gflops / peak);
  }
  return 0;
}

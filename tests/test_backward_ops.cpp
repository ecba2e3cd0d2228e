// Every backward kernel against central finite differences of its forward, on odd sizes.
// The scalar checked is L = Σ y ⊙ R for a fixed random R, so d L / d y = R.
#include "kernels/kernels.h"
#include "test_util.h"

#include <cmath>
#include <functional>
#include <omp.h>

namespace distill {
using test::random_vector;

namespace {

double weighted_sum(const std::vector<float>& y, const std::vector<float>& r) {
  double s = 0.0;
  for (size_t i = 0; i < y.size(); ++i) s += double(y[i]) * r[i];
  return s;
}

// Compares grad with (L(x + h) - L(x - h)) / 2h for every element of x.
void expect_matches_fd(const char* what, std::vector<float>& x, const std::vector<float>& grad,
                       const std::function<double()>& loss, float h = 1e-2f, double tol = 2e-3) {
  ASSERT_EQ(x.size(), grad.size());
  double max_fd = 0.0, max_err = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double fd = test::central_difference(x[i], h, loss);
    max_fd = std::max(max_fd, std::fabs(fd));
    max_err = std::max(max_err, std::fabs(fd - grad[i]));
  }
  EXPECT_GT(max_fd, 0.0) << what << ": gradient is identically zero, the check proves nothing";
  EXPECT_LT(max_err, tol * std::max(1.0, max_fd)) << what << " (largest |fd| " << max_fd << ")";
}

}  // namespace

TEST(Backward, Matmul) {
  const int64_t M = 5, N = 7, K = 9;
  auto x = random_vector(size_t(M * K), 1), w = random_vector(size_t(N * K), 2), b = random_vector(size_t(N), 3);
  auto r = random_vector(size_t(M * N), 4);
  std::vector<float> y(size_t(M * N));
  auto loss = [&] {
    ref::matmul_forward(y.data(), x.data(), w.data(), DType::F32, b.data(), M, N, K);
    return weighted_sum(y, r);
  };
  std::vector<float> dx(x.size(), 123.0f), dw(w.size(), 0.0f), db(b.size(), 0.0f);
  matmul_backward(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), DType::F32, M, N, K, false);
  expect_matches_fd("d_x", x, dx, loss);
  expect_matches_fd("d_w", w, dw, loss);
  expect_matches_fd("d_b", b, db, loss);
  // accumulate_dx adds onto what is there; d_w accumulates across calls
  std::vector<float> dx2(x.size(), 1.0f);
  matmul_backward(dx2.data(), dw.data(), nullptr, r.data(), x.data(), w.data(), DType::F32, M, N, K, true);
  EXPECT_NEAR(dx2[3], dx[3] + 1.0f, 1e-5f);
  std::vector<float> dw1(w.size(), 0.0f);
  matmul_backward(nullptr, dw1.data(), nullptr, r.data(), x.data(), w.data(), DType::F32, M, N, K, false);
  EXPECT_NEAR(dw[5], 2 * dw1[5], 1e-5f);
}

// A frozen quantized weight (QLoRA's base): d_x equals the f32 product with the weight widened,
// over more rows than one chunk of the widening (256), and accumulates when asked.
TEST(Backward, MatmulThroughAFrozenQuantizedWeight) {
  const int64_t M = 5, N = 300, K = 64;
  const auto w = random_vector(size_t(N * K), 21), r = random_vector(size_t(M * N), 22);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::BF16}) {
    SCOPED_TRACE(dtype_name(t));
    std::vector<uint8_t> q(dtype_bytes(t, N * K));
    for (int64_t n = 0; n < N; ++n) quantize_row(q.data() + dtype_bytes(t, n * K), t, w.data() + n * K, K);
    std::vector<float> wide(size_t(N * K));
    for (int64_t n = 0; n < N; ++n) dequantize_row(wide.data() + n * K, q.data() + dtype_bytes(t, n * K), t, K);
    std::vector<float> want(size_t(M * K)), got(size_t(M * K), 7.0f);
    matmul_backward(want.data(), nullptr, nullptr, r.data(), nullptr, wide.data(), DType::F32, M, N, K, false);
    matmul_backward(got.data(), nullptr, nullptr, r.data(), nullptr, q.data(), t, M, N, K, false);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4f * (1.0f + std::fabs(want[i]))) << i;
    std::vector<float> acc(size_t(M * K), 1.0f);
    matmul_backward(acc.data(), nullptr, nullptr, r.data(), nullptr, q.data(), t, M, N, K, true);
    EXPECT_NEAR(acc[9], want[9] + 1.0f, 1e-4f * (1.0f + std::fabs(want[9])));
  }
}

TEST(Backward, Rmsnorm) {
  const int64_t rows = 3, dim = 13;
  auto x = random_vector(size_t(rows * dim), 5), w = random_vector(size_t(dim), 6), r = random_vector(size_t(rows * dim), 7);
  std::vector<float> y(x.size());
  auto loss = [&] {
    ref::rmsnorm_forward(y.data(), x.data(), w.data(), rows, dim, 1e-5f);
    return weighted_sum(y, r);
  };
  std::vector<float> dx(x.size()), dw(w.size(), 0.0f);
  rmsnorm_backward(dx.data(), dw.data(), r.data(), x.data(), w.data(), rows, dim, 1e-5f);
  expect_matches_fd("d_x", x, dx, loss);
  expect_matches_fd("d_w", w, dw, loss);
  // in place (d_x aliasing d_y), as the training pass uses it
  std::vector<float> inplace = r, dw2(w.size(), 0.0f);
  rmsnorm_backward(inplace.data(), dw2.data(), inplace.data(), x.data(), w.data(), rows, dim, 1e-5f);
  EXPECT_LT(test::max_abs_diff(inplace.data(), dx.data(), dx.size()), 1e-6f);
}

TEST(Backward, Rope) {
  const int64_t T = 3, H = 2, HD = 10;
  auto x = random_vector(size_t(T * H * HD), 8), r = random_vector(x.size(), 9);
  std::vector<float> inv(static_cast<size_t>(HD / 2));
  for (int64_t i = 0; i < HD / 2; ++i) inv[size_t(i)] = std::pow(100.0f, -2.0f * float(i) / float(HD));
  const int32_t pos[T] = {0, 5, 77};
  std::vector<float> y(x.size());
  auto loss = [&] {
    y = x;
    ref::rope_forward(y.data(), T, H, HD, pos, inv.data());
    return weighted_sum(y, r);
  };
  // The backward is the forward rotation at the negated positions (layer_graph relies on it).
  const int32_t neg_pos[T] = {0, -5, -77};
  std::vector<float> dx = r;
  rope_forward(dx.data(), T, H, HD, neg_pos, inv.data());
  expect_matches_fd("d_x", x, dx, loss);
}

TEST(Backward, Swiglu) {
  const int64_t n = 29;
  auto g = random_vector(size_t(n), 10, 3.0f), u = random_vector(size_t(n), 11), r = random_vector(size_t(n), 12);
  std::vector<float> y(static_cast<size_t>(n));
  auto loss = [&] {
    ref::swiglu_forward(y.data(), g.data(), u.data(), n);
    return weighted_sum(y, r);
  };
  std::vector<float> dg(static_cast<size_t>(n)), du(static_cast<size_t>(n));
  swiglu_backward(dg.data(), du.data(), r.data(), g.data(), u.data(), n);
  expect_matches_fd("d_gate", g, dg, loss);
  expect_matches_fd("d_up", u, du, loss);
}

TEST(Backward, Embedding) {
  const int64_t vocab = 6, dim = 5, n = 4;
  auto table = random_vector(size_t(vocab * dim), 13), r = random_vector(size_t(n * dim), 14);
  const int32_t ids[n] = {2, 5, 2, 0};  // a repeated id accumulates
  std::vector<float> y(size_t(n * dim));
  auto loss = [&] {
    ref::embedding_forward(y.data(), ids, n, table.data(), DType::F32, dim);
    return weighted_sum(y, r);
  };
  std::vector<float> dt(table.size(), 0.0f);
  embedding_backward(dt.data(), r.data(), ids, n, dim);
  expect_matches_fd("d_table", table, dt, loss);
}

TEST(Backward, TrainingAttentionMatchesCacheAttentionAndFiniteDifferences) {
  // 2 sequences of 7 tokens, 4 query heads over 2 KV heads (GQA), head_dim 6.
  const int64_t B = 2, T = 7, H = 4, KVH = 2, HD = 6, QD = H * HD, KVD = KVH * HD, N = B * T;
  const TrainAttentionShape s{B, T, H, KVH, HD, 1.0f / std::sqrt(float(HD))};
  auto q = random_vector(size_t(N * QD), 15), k = random_vector(size_t(N * KVD), 16), v = random_vector(size_t(N * KVD), 17);
  auto r = random_vector(size_t(N * QD), 18);
  std::vector<float> out(size_t(N * QD)), lse(size_t(B * H * T)), scratch(attention_train_scratch_floats(s));
  attention_train_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), s, scratch.data());

  // Same numbers as the inference kernel over a KV cache laid out [slot][pos][kv_head][hd].
  std::vector<float> ref_out(out.size());
  std::vector<int32_t> pos(static_cast<size_t>(N)), seq(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) pos[size_t(i)] = int32_t(i % T), seq[size_t(i)] = int32_t(i / T);
  const AttentionShape cs{N, H, KVH, HD, T, 0, s.scale};
  ref::attention_forward(ref_out.data(), q.data(), k.data(), v.data(), cs, pos.data(), seq.data());
  EXPECT_LT(test::max_abs_diff(out.data(), ref_out.data(), out.size()), 1e-5f);

  auto loss = [&] {
    attention_train_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), s, scratch.data());
    return weighted_sum(out, r);
  };
  loss();
  std::vector<float> dq(q.size()), dk(k.size()), dv(v.size());
  attention_backward(dq.data(), dk.data(), dv.data(), r.data(), lse.data(), q.data(), k.data(), v.data(), s,
                     scratch.data());
  expect_matches_fd("d_q", q, dq, loss);
  expect_matches_fd("d_k", k, dk, loss);
  expect_matches_fd("d_v", v, dv, loss);
}

// The textbook attention: every row's T probabilities stored, then the stored-P backward.
// Double precision, so it is the reference for the blocked kernel's rounding.
struct NaiveAttention {
  const TrainAttentionShape& s;
  std::vector<double> P;  // [n_seq, H, T, T]
  void forward(std::vector<float>& out, const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v) {
    const int64_t T = s.seq_len, HD = s.head_dim, QD = s.n_head * HD, KVD = s.n_kv_head * HD, G = s.n_head / s.n_kv_head;
    P.assign(size_t(s.n_seq * s.n_head * T * T), 0.0);
    for (int64_t b = 0; b < s.n_seq; ++b)
      for (int64_t h = 0; h < s.n_head; ++h)
        for (int64_t i = 0; i < T; ++i) {
          double* p = &P[size_t(((b * s.n_head + h) * T + i) * T)];
          const int64_t lo = s.window > 0 ? std::max<int64_t>(0, i - s.window + 1) : 0;
          double max = -1e300, sum = 0;
          for (int64_t j = lo; j <= i; ++j) {
            double d = 0;
            for (int64_t e = 0; e < HD; ++e) d += double(q[size_t((b * T + i) * QD + h * HD + e)]) * k[size_t((b * T + j) * KVD + h / G * HD + e)];
            max = std::max(max, p[j] = d * s.scale);
          }
          for (int64_t j = lo; j <= i; ++j) sum += (p[j] = std::exp(p[j] - max));
          for (int64_t j = lo; j <= i; ++j) p[j] /= sum;
          for (int64_t e = 0; e < HD; ++e) {
            double o = 0;
            for (int64_t j = lo; j <= i; ++j) o += p[j] * v[size_t((b * T + j) * KVD + h / G * HD + e)];
            out[size_t((b * T + i) * QD + h * HD + e)] = float(o);
          }
        }
  }
  void backward(std::vector<double>& dq, std::vector<double>& dk, std::vector<double>& dv, const std::vector<float>& dout,
                const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v) {
    const int64_t T = s.seq_len, HD = s.head_dim, QD = s.n_head * HD, KVD = s.n_kv_head * HD, G = s.n_head / s.n_kv_head;
    dq.assign(q.size(), 0.0), dk.assign(k.size(), 0.0), dv.assign(v.size(), 0.0);
    std::vector<double> dp(static_cast<size_t>(T));
    for (int64_t b = 0; b < s.n_seq; ++b)
      for (int64_t h = 0; h < s.n_head; ++h)
        for (int64_t i = 0; i < T; ++i) {
          const double* p = &P[size_t(((b * s.n_head + h) * T + i) * T)];
          const size_t qi = size_t((b * T + i) * QD + h * HD);
          double dot = 0;
          for (int64_t j = 0; j <= i; ++j) {
            const size_t kj = size_t((b * T + j) * KVD + h / G * HD);
            dp[size_t(j)] = 0;
            for (int64_t e = 0; e < HD; ++e) dp[size_t(j)] += double(dout[qi + size_t(e)]) * v[kj + size_t(e)];
            for (int64_t e = 0; e < HD; ++e) dv[kj + size_t(e)] += p[j] * dout[qi + size_t(e)];
            dot += p[j] * dp[size_t(j)];
          }
          for (int64_t j = 0; j <= i; ++j) {
            const size_t kj = size_t((b * T + j) * KVD + h / G * HD);
            const double ds = p[j] * (dp[size_t(j)] - dot) * s.scale;  // P is 0 outside the window
            for (int64_t e = 0; e < HD; ++e) dq[qi + size_t(e)] += ds * k[kj + size_t(e)], dk[kj + size_t(e)] += ds * q[qi + size_t(e)];
          }
        }
  }
};

float max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
  return float(m);
}

TEST(Backward, BlockedTrainingAttentionEqualsStoredProbabilityAttention) {
  // 150 tokens cross three query blocks (64 rows each); a 40-token window starts key ranges
  // mid-sequence. Both with and without the window.
  for (const int64_t window : {int64_t(0), int64_t(40)}) {
    const int64_t B = 2, T = 150, H = 4, KVH = 2, HD = 8, QD = H * HD, KVD = KVH * HD, N = B * T;
    TrainAttentionShape s{B, T, H, KVH, HD, 1.0f / std::sqrt(float(HD))};
    s.window = window;
    auto q = random_vector(size_t(N * QD), 25), k = random_vector(size_t(N * KVD), 26), v = random_vector(size_t(N * KVD), 27);
    auto dout = random_vector(size_t(N * QD), 28);
    std::vector<float> out(size_t(N * QD)), naive_out(out.size()), lse(size_t(B * H * T)), scratch(attention_train_scratch_floats(s));
    attention_train_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), s, scratch.data());
    NaiveAttention naive{s, {}};
    naive.forward(naive_out, q, k, v);
    EXPECT_LT(test::max_abs_diff(out.data(), naive_out.data(), out.size()), 1e-5f) << "window " << window;

    std::vector<float> dq(q.size()), dk(k.size()), dv(v.size());
    attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), lse.data(), q.data(), k.data(), v.data(), s, scratch.data());
    std::vector<double> rq, rk, rv;
    naive.backward(rq, rk, rv, dout, q, k, v);
    EXPECT_LT(max_abs_diff(dq, rq), 1e-5f) << "d_q, window " << window;
    EXPECT_LT(max_abs_diff(dk, rk), 1e-5f) << "d_k, window " << window;
    EXPECT_LT(max_abs_diff(dv, rv), 1e-5f) << "d_v, window " << window;
  }
}

}  // namespace distill

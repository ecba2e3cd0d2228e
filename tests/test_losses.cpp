// Cross-entropy forward against a hand computation and its backward against finite differences.
#include "train/losses.h"
#include "core/error.h"
#include "test_util.h"

#include <cmath>

namespace distill {

TEST(CrossEntropy, ForwardByHandWithIgnoredRows) {
  // Row 0: logits {0, ln 3} target 1: -log(3/4). Row 1 ignored.
  const float logits[4] = {0.0f, std::log(3.0f), 5.0f, -5.0f};
  const int32_t targets[2] = {1, kIgnoreIndex};
  EXPECT_NEAR(cross_entropy_forward(logits, targets, 2, 2), -std::log(0.75), 1e-7);
  const int32_t none[2] = {kIgnoreIndex, kIgnoreIndex};
  EXPECT_EQ(cross_entropy_forward(logits, none, 2, 2), 0.0);
  const int32_t bad[2] = {2, 0};
  EXPECT_THROW(cross_entropy_forward(logits, bad, 2, 2), Error);
}

TEST(CrossEntropy, BackwardMatchesFiniteDifferences) {
  const int64_t n = 4, V = 7;
  std::vector<float> logits = test::random_vector(size_t(n * V), 21, 2.0f);
  const int32_t targets[n] = {3, kIgnoreIndex, 0, 6};
  std::vector<float> grad(logits.size());
  const double loss = cross_entropy_backward(grad.data(), logits.data(), targets, n, V);
  EXPECT_NEAR(loss, cross_entropy_forward(logits.data(), targets, n, V), 1e-6);
  // in place: the gradient overwrites the logits
  std::vector<float> inplace = logits;
  cross_entropy_backward(inplace.data(), inplace.data(), targets, n, V);
  EXPECT_LT(test::max_abs_diff(inplace.data(), grad.data(), grad.size()), 1e-7f);
  const float h = 1e-2f;
  for (size_t i = 0; i < logits.size(); ++i) {
    std::vector<float> plus = logits, minus = logits;
    plus[i] += h;
    minus[i] -= h;
    const double fd = (cross_entropy_forward(plus.data(), targets, n, V) - cross_entropy_forward(minus.data(), targets, n, V)) / (2 * h);
    EXPECT_NEAR(grad[i], fd, 1e-4) << "element " << i;
  }
}

}  // namespace distill

// Students cut from a teacher (model/cut.h, `distill init --from`): keeping every layer and channel
// reproduces the teacher's logits exactly; kept layers are the teacher's own weights; dropping FFN
// channels whose output column is zero changes nothing (they are the least important by the
// ‖gate‖·‖up‖·‖down‖ score); bad layer lists are refused naming the problem.
#include "model/cut.h"
#include "model/decoder.h"
#include "test_util.h"
#include "tiny_model.h"

#include <gtest/gtest.h>

namespace distill {

namespace {

Model teacher_model(int64_t layers, uint64_t seed) {
  ModelConfig c;
  c.model_type = "llama";
  c.n_vocab = 50, c.n_embd = 32, c.n_ff = 64, c.n_layer = layers, c.n_head = 4, c.n_kv_head = 2, c.head_dim = 8;
  c.max_position_embeddings = 64;
  return Model::random(c, DType::F32, seed, 0.3f);
}

std::vector<float> logits_of(const Model& m, const std::vector<int32_t>& ids) {
  Decoder d(m);
  const Tensor t = d.forward_full(ids.data(), 1, int64_t(ids.size()));
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

const std::vector<int32_t> kIds = {1, 7, 3, 22, 9, 41, 5, 5, 17, 30};

}  // namespace

TEST(ModelCut, AllLayersAndChannelsIsTheTeacher) {
  const Model t = teacher_model(3, 1);
  const Model s = cut_model(t, {});
  EXPECT_EQ(logits_of(s, kIds), logits_of(t, kIds));
}

TEST(ModelCut, KeptLayersAreTheTeachersOwn) {
  const Model t = teacher_model(4, 2);
  CutOptions o;
  o.layers = parse_layer_list("0,2-3", 4);
  ASSERT_EQ(o.layers, (std::vector<int64_t>{0, 2, 3}));
  const Model s = cut_model(t, o);
  ASSERT_EQ(s.config.n_layer, 3);
  const int64_t n = t.weights.layers[2].wq.numel();
  EXPECT_EQ(0, std::memcmp(s.weights.layers[1].wq.raw(), t.weights.layers[2].wq.raw(), size_t(n) * 4));
  EXPECT_NE(s.weights.layers[1].wq.raw(), t.weights.layers[2].wq.raw()) << "a copy, not a view of the teacher";
  // the same as a teacher whose layer 1 does nothing: zero its output projections
  Model t2 = cut_model(t, {});
  std::fill_n(t2.weights.layers[1].wo.data<float>(), t2.weights.layers[1].wo.numel(), 0.0f);
  std::fill_n(t2.weights.layers[1].w_down.data<float>(), t2.weights.layers[1].w_down.numel(), 0.0f);
  const std::vector<float> a = logits_of(s, kIds), b = logits_of(t2, kIds);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4f) << i;
  EXPECT_EQ(parse_layer_list("every:2", 5), (std::vector<int64_t>{0, 2, 4}));
}

TEST(ModelCut, DroppedChannelsAreTheOnesThatDoNothing) {
  Model t = teacher_model(2, 3);
  // In every layer, channels 5, 17, 40 and 63 write nothing (zero columns of down).
  for (LayerWeights& l : t.weights.layers)
    for (int64_t r = 0; r < 32; ++r)
      for (int64_t c : {5, 17, 40, 63}) l.w_down.data<float>()[r * 64 + c] = 0.0f;
  CutOptions o;
  o.n_ff = 60;
  const Model s = cut_model(t, o);
  ASSERT_EQ(s.config.n_ff, 60);
  ASSERT_EQ(s.weights.layers[0].w_gate.shape(), (Shape{60, 32}));
  ASSERT_EQ(s.weights.layers[0].w_down.shape(), (Shape{32, 60}));
  const std::vector<float> a = logits_of(s, kIds), b = logits_of(t, kIds);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4f) << i;
  // one channel fewer than the useful ones changes the function
  o.n_ff = 59;
  const std::vector<float> c = logits_of(cut_model(t, o), kIds);
  double diff = 0;
  for (size_t i = 0; i < c.size(); ++i) diff = std::max(diff, double(std::abs(c[i] - b[i])));
  EXPECT_GT(diff, 1e-3);
}

TEST(ModelCut, BadRequestsAreRefused) {
  auto msg = [](auto fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(msg([] { parse_layer_list("0,4", 4); }).find("layer 4 does not exist"), std::string::npos);
  EXPECT_NE(msg([] { parse_layer_list("2,1", 4); }).find("increasing"), std::string::npos);
  EXPECT_NE(msg([] { parse_layer_list("a", 4); }).find("'a'"), std::string::npos);
  EXPECT_NE(msg([] { parse_layer_list("every:0", 4); }).find("positive"), std::string::npos);
  const Model t = teacher_model(2, 4);
  CutOptions o;
  o.n_ff = 65;
  EXPECT_NE(msg([&] { cut_model(t, o); }).find("wider"), std::string::npos);
}

TEST(ModelCut, InitFromATeacherDirectory) {
  test::TempDir dir;
  ASSERT_EQ(test::run_distill("init --preset tiny --tokenizer bytes --seed 3 -o " + (dir / "teacher")).exit_code, 0);
  auto r = test::run_distill("init --from " + (dir / "teacher") + " --layers 1 --ffn 96 -o " + (dir / "student"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("1 of 2 layers"), std::string::npos) << r.output;
  const Model s = Model::load(dir / "student");
  EXPECT_EQ(s.config.n_layer, 1);
  EXPECT_EQ(s.config.n_ff, 96);
  r = test::run_distill("run " + (dir / "student") + " -p hi -n 4 --temp 0");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = test::run_distill("init --from " + (dir / "teacher") + " --layers 7 -o " + (dir / "bad"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("layer 7 does not exist (the teacher has 2)"), std::string::npos) << r.output;
  r = test::run_distill("init --layers 0 -o " + (dir / "bad2"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--from"), std::string::npos) << r.output;
}

}  // namespace distill

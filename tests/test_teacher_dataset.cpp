// The teacher dataset format: records round-trip (ids, soft labels at f16), every record is
// checksummed, and a corrupt or torn record is found with its offset — refused by a reader,
// cut by a resuming writer.
#include "formats/teacher_dataset.h"
#include "test_util.h"

#include "core/dtype.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>

namespace distill {

namespace {
TeacherRecord sample_record(uint64_t index, int k) {
  TeacherRecord r;
  r.prompt_index = index;
  r.sample_index = 1;
  r.prompt = {5, 6, 7};
  r.completion = {100000, 8, 151000};
  r.finished = true;
  r.k = k;
  r.soft = {1, 0, 1};
  for (int j = 0; j < 3; ++j)
    for (int i = 0; i < k; ++i) {
      r.topk_ids.push_back(r.soft[size_t(j)] ? 150000 - i * 7001 : 0);
      r.topk_logp.push_back(r.soft[size_t(j)] ? -0.5f * float(i) - 0.01f : 0.0f);
    }
  return r;
}
}  // namespace

TEST(TeacherDataset, RecordsRoundTrip) {
  test::TempDir dir;
  {
    TeacherDatasetWriter w(dir.str(), false);
    w.append(sample_record(0, 20));
    w.append(sample_record(1, 0));
    w.finish([](const std::vector<int32_t>& ids) { return std::to_string(ids.size()); });
  }
  std::vector<TeacherRecord> got;
  read_records(dir / "records.bin", [&](TeacherRecord&& r) { got.push_back(std::move(r)); });
  ASSERT_EQ(got.size(), 2u);
  const TeacherRecord want = sample_record(0, 20);
  EXPECT_EQ(got[0].prompt, want.prompt);
  EXPECT_EQ(got[0].completion, want.completion);
  EXPECT_EQ(got[0].soft, want.soft);
  EXPECT_TRUE(got[0].finished);
  // soft positions keep their (id, log-prob) pairs, each log-prob exactly as f16 holds it
  for (int j : {0, 2}) {
    for (int i = 0; i < 20; ++i) {
      const int32_t id = want.topk_ids[size_t(j * 20 + i)];
      const auto* ids = got[0].topk_ids.data() + j * 20;
      const int at = int(std::find(ids, ids + 20, id) - ids);
      ASSERT_LT(at, 20);
      EXPECT_EQ(got[0].topk_logp[size_t(j * 20 + at)], f16_to_f32(f32_to_f16(want.topk_logp[size_t(j * 20 + i)])));
    }
  }
  EXPECT_EQ(got[1].k, 0);
  const auto st = dataset_stats(dir.str());
  EXPECT_EQ(st["records"], 2);
  EXPECT_EQ(st["soft_positions"], 2);
  EXPECT_LT(st["topk_bytes_per_soft_position"].get<double>(), 120.0) << "smaller than plain ids + f16 at k = 20";
  // the soft labels' content, by hand: log-probs −0.01 − 0.5 i (as f16 holds them), top-1 id
  // 150000 (the text has 100000 and 151000 there: never the top-1)
  double h = 0, mass = 0;
  for (int i = 0; i < 20; ++i) {
    const double lp = f16_to_f32(f32_to_f16(-0.5f * float(i) - 0.01f));
    h -= std::exp(lp) * lp, mass += std::exp(lp);
  }
  EXPECT_NEAR(st["soft_topk_entropy"].get<double>(), h, 1e-9);
  EXPECT_NEAR(st["soft_topk_mass"].get<double>(), mass, 1e-9);
  EXPECT_NEAR(st["soft_top1_prob"].get<double>(), std::exp(double(f16_to_f32(f32_to_f16(-0.01f)))), 1e-9);
  EXPECT_EQ(st["soft_top1_is_text"].get<double>(), 0.0);
  EXPECT_TRUE(std::filesystem::exists(dir / "text.jsonl"));
  EXPECT_TRUE(std::filesystem::exists(dir / "manifest.json"));
}

// What the soft labels carry beyond the text, by hand on two positions: one whose top-1 is the
// text's token (0.75 / 0.25), one whose top-1 is the second slot and not the text's (0.2 / 0.8).
TEST(TeacherDataset, SoftContentStatsByHand) {
  test::TempDir dir;
  TeacherRecord r;
  r.prompt = {1};
  r.completion = {5, 7};
  r.k = 2;
  r.soft = {1, 1};
  r.topk_ids = {5, 9, 7, 3};
  r.topk_logp = {std::log(0.75f), std::log(0.25f), std::log(0.2f), std::log(0.8f)};
  {
    TeacherDatasetWriter w(dir.str(), false);
    w.append(r);
  }
  const auto st = dataset_stats(dir.str());
  const auto h = [](double p) { return -p * std::log(p) - (1 - p) * std::log(1 - p); };
  EXPECT_NEAR(st["soft_topk_entropy"].get<double>(), (h(0.75) + h(0.2)) / 2, 2e-3);  // f16 log-probs
  EXPECT_NEAR(st["soft_topk_mass"].get<double>(), 1.0, 2e-3);
  EXPECT_NEAR(st["soft_top1_prob"].get<double>(), (0.75 + 0.8) / 2, 2e-3);
  EXPECT_DOUBLE_EQ(st["soft_top1_is_text"].get<double>(), 0.5);
}

TEST(TeacherDataset, CorruptionIsFoundWithItsOffset) {
  test::TempDir dir;
  {
    TeacherDatasetWriter w(dir.str(), false);
    for (uint64_t i = 0; i < 3; ++i) w.append(sample_record(i, 4));
  }
  const std::string good = test::read_bytes(dir / "records.bin");
  const size_t rec = good.size() / 3;
  std::string bad = good;
  bad[rec + 30] ^= 0x40;  // a bit flip inside the second record
  test::write_bytes(dir / "records.bin", bad);
  try {
    read_records(dir / "records.bin", [](TeacherRecord&&) {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("offset " + std::to_string(rec) + ": checksum mismatch"), std::string::npos) << e.what();
  }
  test::write_bytes(dir / "records.bin", good.substr(0, good.size() - 5));  // torn by a kill
  EXPECT_THROW(read_records(dir / "records.bin", [](TeacherRecord&&) {}), Error);
  {
    EXPECT_THROW(TeacherDatasetWriter(dir.str(), false), Error) << "an existing dataset needs --resume";
    TeacherDatasetWriter w(dir.str(), true);
    EXPECT_EQ(w.records(), 2);
    EXPECT_EQ(w.repaired_bytes(), rec - 5);
    EXPECT_TRUE(w.done(1, 1));
    EXPECT_FALSE(w.done(2, 1));
    w.append(sample_record(2, 4));
  }
  EXPECT_EQ(test::read_bytes(dir / "records.bin"), good) << "resumed, the file is what an uninterrupted run writes";
  test::write_bytes(dir / "records.bin", "not a dataset at all");
  EXPECT_THROW(read_records(dir / "records.bin", [](TeacherRecord&&) {}), Error);
}

}  // namespace distill

namespace distill {

namespace {

// A language model's top-k at one position, synthesised: logits falling like −α·log(rank) with
// noise over a vocabulary of V (α and the noise vary by position, as peaked and flat predictions
// do), the k likeliest kept with their log-softmax over all V.
void lm_like_topk(std::mt19937& rng, int64_t V, int k, int32_t* ids, float* logp) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::normal_distribution<double> noise(0.0, 0.3);
  const double alpha = 0.8 + 2.2 * u(rng);
  std::vector<std::pair<double, int32_t>> top;
  double z = 0;
  // ranks map to random ids (a shuffled vocabulary); only the head matters for the top-k
  std::vector<int32_t> id_of(static_cast<size_t>(V));
  std::iota(id_of.begin(), id_of.end(), 0);
  std::shuffle(id_of.begin(), id_of.end(), rng);
  for (int64_t r = 0; r < V; ++r) {
    const double logit = -alpha * std::log(double(r + 1)) + noise(rng);
    z += std::exp(logit);
    if (r < 4 * k) top.push_back({logit, id_of[size_t(r)]});
  }
  std::sort(top.begin(), top.end(), std::greater<>());
  for (int i = 0; i < k; ++i) ids[i] = top[size_t(i)].second, logp[i] = float(top[size_t(i)].first - std::log(z));
}

}  // namespace

// The compact store (formats/topk_codec.h): at k = 20, soft positions of language-model-like
// distributions take at most 64 bytes up to a 152 000-token vocabulary (Qwen's), and every log-prob
// reads back as exactly its f16 value.
TEST(TeacherDataset, SoftPositionsAreCompactAndLosslessToF16) {
  std::mt19937 rng(5);
  for (int64_t V : {259, 32000, 152000}) {
    test::TempDir dir;
    const int k = 20, n = 200;
    TeacherRecord r;
    r.prompt = {1, 2, 3};
    r.k = k;
    r.soft.assign(size_t(n), 1);
    r.topk_ids.resize(size_t(n * k));
    r.topk_logp.resize(size_t(n * k));
    for (int j = 0; j < n; ++j) {
      lm_like_topk(rng, V, k, r.topk_ids.data() + j * k, r.topk_logp.data() + j * k);
      r.completion.push_back(r.topk_ids[size_t(j * k)]);
    }
    {
      TeacherDatasetWriter w(dir.str(), false);
      w.append(r);
      w.finish([](const std::vector<int32_t>&) { return std::string(); });
    }
    std::vector<TeacherRecord> got;
    read_records(dir / "records.bin", [&](TeacherRecord&& x) { got.push_back(std::move(x)); });
    ASSERT_EQ(got.size(), 1u);
    int64_t not_f16 = 0;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < k; ++i) {
        const int32_t id = r.topk_ids[size_t(j * k + i)];
        const int32_t* g = got[0].topk_ids.data() + j * k;
        const int at = int(std::find(g, g + k, id) - g);
        ASSERT_LT(at, k) << "id " << id << " lost at position " << j;
        const float want = r.topk_logp[size_t(j * k + i)], have = got[0].topk_logp[size_t(j * k + at)];
        not_f16 += have != f16_to_f32(f32_to_f16(want));  // what f16 storage gives
      }
    EXPECT_EQ(not_f16, 0) << "V = " << V << ": log-probs read back as their f16 values";
    const double bytes = dataset_stats(dir.str())["topk_bytes_per_soft_position"].get<double>();
    std::printf("[ measured ] k = 20, V = %lld: %.1f bytes per soft position\n", (long long)V, bytes);
    EXPECT_LE(bytes, 64.0) << "V = " << V;
  }
}

// Datasets written before the compact store (records "TDR1") still read.
TEST(TeacherDataset, FirstFormatRecordsStillRead) {
  int n = 0;
  read_records(std::string(DISTILL_SOURCE_DIR) + "/tests/data/records-tdr1.bin", [&](TeacherRecord&& r) {
    ++n;
    EXPECT_FALSE(r.completion.empty());
  });
  EXPECT_GT(n, 0);
}

// Records of the second format ("TDR2": log-probs on a 1/1024-nat grid, one Rice parameter for
// their gaps) still read: tests/data/records-tdr2.bin holds one record of five completion tokens,
// four of them with a top-4 — position j's ids {7 + 3j, 100 + j, 2 + j, 40000 + 11j} with log-probs
// {−0.1 − 0.01j, −1.7 − 0.1j, −5.123 − j, −20.5 − 2j} (position 2's token, 999, is not among them).
TEST(TeacherDataset, SecondFormatRecordsStillRead) {
  std::vector<TeacherRecord> got;
  read_records(std::string(DISTILL_SOURCE_DIR) + "/tests/data/records-tdr2.bin", [&](TeacherRecord&& r) { got.push_back(std::move(r)); });
  ASSERT_EQ(got.size(), 1u);
  const TeacherRecord& r = got[0];
  EXPECT_EQ(r.prompt_index, 3u);
  EXPECT_EQ(r.completion, (std::vector<int32_t>{7, 10, 999, 16, 19}));
  ASSERT_EQ(r.k, 4);
  EXPECT_EQ(r.soft, (std::vector<uint8_t>{1, 1, 1, 1, 0}));
  for (int j = 0; j < 4; ++j) {
    const int32_t ids[4] = {7 + 3 * j, 100 + j, 2 + j, 40000 + 11 * j};
    const float lp[4] = {-0.1f - 0.01f * j, -1.7f - 0.1f * j, -5.123f - j, -20.5f - 2.0f * j};
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(r.topk_ids[size_t(j * 4 + i)], ids[i]) << "position " << j;  // stored likeliest first
      EXPECT_NEAR(r.topk_logp[size_t(j * 4 + i)], lp[i], 5e-4) << "position " << j;
    }
  }
}

}  // namespace distill

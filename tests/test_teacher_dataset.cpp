// The teacher dataset format: records round-trip (ids, soft labels at f16), every record is
// checksummed, and a corrupt or torn record is found with its offset — refused by a reader,
// cut by a resuming writer.
#include "formats/teacher_dataset.h"
#include "test_util.h"

#include <filesystem>

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
  // soft positions keep their (id, log-prob) pairs; stored sorted by id, log-probs to 1/2048 nat
  for (int j : {0, 2}) {
    for (int i = 0; i < 20; ++i) {
      const int32_t id = want.topk_ids[size_t(j * 20 + i)];
      const auto* ids = got[0].topk_ids.data() + j * 20;
      const int at = int(std::find(ids, ids + 20, id) - ids);
      ASSERT_LT(at, 20);
      EXPECT_NEAR(got[0].topk_logp[size_t(j * 20 + at)], want.topk_logp[size_t(j * 20 + i)], 5e-4);
    }
  }
  EXPECT_EQ(got[1].k, 0);
  const auto st = dataset_stats(dir.str());
  EXPECT_EQ(st["records"], 2);
  EXPECT_EQ(st["soft_positions"], 2);
  EXPECT_LT(st["topk_bytes_per_soft_position"].get<double>(), 120.0) << "smaller than plain ids + f16 at k = 20";
  EXPECT_TRUE(std::filesystem::exists(dir / "text.jsonl"));
  EXPECT_TRUE(std::filesystem::exists(dir / "manifest.json"));
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

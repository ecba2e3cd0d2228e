// Teacher datasets: what `distill label` writes and `distill train --data DATASET` reads.
//
// A dataset is a directory:
//   manifest.json   teacher, tokenizer fingerprint, settings, counts, failed prompts
//   records.bin     append-only records, each checksummed (below)
//   text.jsonl      the same examples as text, for people (rewritten from records.bin)
//
// Record layout, little-endian:
//   u32 magic "TDR3"   u32 payload bytes   u32 CRC-32 of the payload
//   payload:
//     u64 prompt_index   u32 sample_index   u32 n_prompt   u32 n_completion   u16 k   u16 flags(bit 0: finished)
//     i32 ids[n_prompt + n_completion]
//     if k > 0:  u8 soft_bitmap[(n_completion + 7) / 8]       bit j: completion token j has a top-k
//                one bit stream, padded to a byte: per soft position in order, its top-k as
//                formats/topk_codec.h packs it (≈ 63 bytes at k = 20 with a 152 000-token vocabulary;
//                log-probs as their f16 values)
// Records "TDR2" (log-probs on a 1/1024-nat grid, 68 bytes there) and "TDR1" (top-k as delta
// varints and u16 fixed point, ≈ 78 bytes) are still read.
// A reader rejects a corrupt or truncated record naming the file and byte offset; a resumed
// labelling run cuts a torn last record (from a kill) and continues after the last whole one.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace distill {

struct TeacherRecord {
  uint64_t prompt_index = 0;
  uint32_t sample_index = 0;
  std::vector<int32_t> prompt;      // token ids
  std::vector<int32_t> completion;  // token ids (the targets)
  bool finished = false;
  int k = 0;                        // top-k per soft position (0: text only)
  std::vector<uint8_t> soft;        // [n_completion] 1 = has top-k
  std::vector<int32_t> topk_ids;    // [n_completion, k] (-1 where not soft)
  std::vector<float> topk_logp;     // [n_completion, k]
};

uint32_t crc32(const void* data, size_t n, uint32_t crc = 0);

// Serialises one record (header + payload) into bytes.
std::string encode_record(const TeacherRecord& r);

// Reads every record of records.bin, calling fn for each. Throws "<file>: offset N: reason" for a
// bad record. If `valid_end` is given, a torn or corrupt tail is not an error: reading stops there
// and its offset is returned in *valid_end (for resuming).
void read_records(const std::string& path, const std::function<void(TeacherRecord&&)>& fn, uint64_t* valid_end = nullptr);

class TeacherDatasetWriter {
public:
  // Opens DIR for appending (creating it); with `resume`, scans the existing records (cutting a
  // torn tail) so done() knows what is there. Without it, an existing dataset is an error.
  TeacherDatasetWriter(const std::string& dir, bool resume);
  ~TeacherDatasetWriter();
  bool done(uint64_t prompt_index, uint32_t sample_index) const { return done_.count({prompt_index, sample_index}) != 0; }
  void append(const TeacherRecord& r);  // flushed and fsynced before returning
  nlohmann::json& manifest() { return manifest_; }
  // Writes manifest.json (with the counts) and text.jsonl from the records, atomically.
  void finish(const std::function<std::string(const std::vector<int32_t>&)>& detokenize);
  int64_t records() const { return records_; }
  uint64_t repaired_bytes() const { return repaired_; }

private:
  std::string dir_;
  std::FILE* file_ = nullptr;
  std::set<std::pair<uint64_t, uint32_t>> done_;
  nlohmann::json manifest_ = nlohmann::json::object();
  int64_t records_ = 0;
  uint64_t repaired_ = 0;
};

// The counts of a dataset: records, prompt/completion tokens, soft positions, bytes per labelled
// token; and what the soft labels carry beyond the text, as means over soft positions: the
// teacher's entropy over its top-k (nats; near 0 means logit KD can add little to CE on the
// text), its top-1 probability, the top-k's mass, and how often its top-1 is the text's token.
nlohmann::json dataset_stats(const std::string& dir);

// DIR/manifest.json of a teacher dataset, parsed; throws naming the file when it is missing or
// malformed (not a teacher dataset).
nlohmann::json read_teacher_manifest(const std::string& dir);

}  // namespace distill

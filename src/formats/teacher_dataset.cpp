#include "formats/teacher_dataset.h"

#include "core/atomic_file.h"
#include "core/error.h"
#include "formats/json_fields.h"
#include "formats/topk_codec.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

namespace distill {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr uint32_t kMagicV1 = 0x31524454;  // "TDR1": top-k as delta varints + u16 fixed point (read only)
constexpr uint32_t kMagicV2 = 0x32524454;  // "TDR2": top-k bit-packed on a 1/1024-nat grid (read only)
constexpr uint32_t kMagic = 0x33524454;    // "TDR3": top-k bit-packed, f16 log-probs (formats/topk_codec.h)
constexpr size_t kHeader = 12;
constexpr uint32_t kMaxPayload = 1u << 30;
constexpr double kLogpScale = 1024.0;  // log-probs in units of 1/1024 nat

uint32_t crc_table(int i) {
  uint32_t c = uint32_t(i);
  for (int k = 0; k < 8; ++k) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;  // reflected CRC-32 polynomial
  return c;
}

template <typename T> void put(std::string& s, T v) { s.append(reinterpret_cast<const char*>(&v), sizeof v); }


struct Cursor {
  const unsigned char* p;
  const unsigned char* end;
  template <typename T> T get() {
    if (size_t(end - p) < sizeof(T)) fail("payload ends early");
    T v;
    std::memcpy(&v, p, sizeof v);
    p += sizeof v;
    return v;
  }
  uint32_t varint() {
    uint32_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
      if (p >= end) fail("payload ends inside a varint");
      const unsigned char b = *p++;
      v |= uint32_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint too long");
  }
};

TeacherRecord decode_payload(const unsigned char* data, size_t n, uint32_t magic) {
  const bool v1 = magic == kMagicV1;
  Cursor c{data, data + n};
  TeacherRecord r;
  r.prompt_index = c.get<uint64_t>();
  r.sample_index = c.get<uint32_t>();
  const uint32_t n_prompt = c.get<uint32_t>(), n_completion = c.get<uint32_t>();
  r.k = c.get<uint16_t>();
  r.finished = c.get<uint16_t>() & 1;
  if (uint64_t(n_prompt) + n_completion > n / 4) fail("token counts {} + {} exceed the payload", n_prompt, n_completion);
  r.prompt.resize(n_prompt);
  r.completion.resize(n_completion);
  for (auto& id : r.prompt) id = c.get<int32_t>();
  for (auto& id : r.completion) id = c.get<int32_t>();
  if (r.k > 0) {
    r.soft.assign(n_completion, 0);
    r.topk_ids.assign(size_t(n_completion) * size_t(r.k), -1);
    r.topk_logp.assign(size_t(n_completion) * size_t(r.k), -INFINITY);
    std::vector<uint8_t> bitmap((n_completion + 7) / 8);
    for (auto& b : bitmap) b = c.get<uint8_t>();
    if (!v1) {  // one bit stream for the record's soft positions
      BitReader bits(c.p, c.end);
      for (uint32_t j = 0; j < n_completion; ++j) {
        if (!(bitmap[j / 8] >> (j % 8) & 1)) continue;
        r.soft[j] = 1;
        decode_topk(bits, r.topk_ids.data() + size_t(j) * r.k, r.topk_logp.data() + size_t(j) * r.k, r.k, r.completion[j],
                    magic == kMagicV2 ? TopkFormat::V2 : TopkFormat::V3);
      }
      c.p = bits.align();
    }
    for (uint32_t j = 0; j < n_completion && v1; ++j) {
      if (!(bitmap[j / 8] >> (j % 8) & 1)) continue;
      r.soft[j] = 1;
      int64_t id = 0;
      for (int i = 0; i < r.k; ++i) {
        id += c.varint();
        if (id > INT32_MAX) fail("top-k id overflows");
        r.topk_ids[size_t(j) * r.k + i] = int32_t(id);
      }
      for (int i = 0; i < r.k; ++i) r.topk_logp[size_t(j) * r.k + i] = -float(c.get<uint16_t>()) / kLogpScale;
    }
  }
  if (c.p != c.end) fail("{} bytes left over after the record", c.end - c.p);
  return r;
}

}  // namespace

uint32_t crc32(const void* data, size_t n, uint32_t crc) {
  static const std::vector<uint32_t> table = [] {
    std::vector<uint32_t> t(256);
    for (int i = 0; i < 256; ++i) t[size_t(i)] = crc_table(i);
    return t;
  }();
  crc = ~crc;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::string encode_record(const TeacherRecord& r) {
  std::string pl;
  put<uint64_t>(pl, r.prompt_index);
  put<uint32_t>(pl, r.sample_index);
  put<uint32_t>(pl, uint32_t(r.prompt.size()));
  put<uint32_t>(pl, uint32_t(r.completion.size()));
  put<uint16_t>(pl, uint16_t(r.k));
  put<uint16_t>(pl, r.finished ? 1 : 0);
  for (int32_t id : r.prompt) put<int32_t>(pl, id);
  for (int32_t id : r.completion) put<int32_t>(pl, id);
  if (r.k > 0) {
    const size_t n = r.completion.size();
    std::vector<uint8_t> bitmap((n + 7) / 8, 0);
    for (size_t j = 0; j < n; ++j)
      if (r.soft[j]) bitmap[j / 8] |= uint8_t(1u << (j % 8));
    pl.append(reinterpret_cast<const char*>(bitmap.data()), bitmap.size());
    BitWriter bits;
    for (size_t j = 0; j < n; ++j)
      if (r.soft[j]) encode_topk(bits, r.topk_ids.data() + j * size_t(r.k), r.topk_logp.data() + j * size_t(r.k), r.k, r.completion[j]);
    bits.flush_to(pl);
  }
  std::string rec;
  put<uint32_t>(rec, kMagic);
  put<uint32_t>(rec, uint32_t(pl.size()));
  put<uint32_t>(rec, crc32(pl.data(), pl.size()));
  return rec + pl;
}

void read_records(const std::string& path, const std::function<void(TeacherRecord&&)>& fn, uint64_t* valid_end) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  const std::string all((std::istreambuf_iterator<char>(in)), {});
  const auto* data = reinterpret_cast<const unsigned char*>(all.data());
  uint64_t off = 0;
  while (off < all.size()) {
    std::string problem;
    uint32_t len = 0;
    if (all.size() - off < kHeader) {
      problem = "truncated record header";
    } else {
      uint32_t magic, crc;
      std::memcpy(&magic, data + off, 4);
      std::memcpy(&len, data + off + 4, 4);
      std::memcpy(&crc, data + off + 8, 4);
      if (magic != kMagic && magic != kMagicV2 && magic != kMagicV1) problem = "bad record magic (not a teacher dataset, or corrupt)";
      else if (len > kMaxPayload) problem = fmt::format("record length {} is implausible", len);
      else if (all.size() - off - kHeader < len) problem = fmt::format("truncated record ({} of {} bytes)", all.size() - off - kHeader, len);
      else if (crc32(data + off + kHeader, len) != crc) problem = "checksum mismatch (corrupt record)";
    }
    if (problem.empty()) {
      TeacherRecord r;
      try {
        uint32_t magic;
        std::memcpy(&magic, data + off, 4);
        r = decode_payload(data + off + kHeader, len, magic);
      } catch (const Error& e) {
        problem = e.what();
      }
      if (problem.empty()) {
        fn(std::move(r));
        off += kHeader + len;
        continue;
      }
    }
    if (valid_end) break;
    fail("{}: offset {}: {}", path, off, problem);
  }
  if (valid_end) *valid_end = off;
}

TeacherDatasetWriter::TeacherDatasetWriter(const std::string& dir, bool resume) : dir_(dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create: {}", dir, ec.message());
  const fs::path records = fs::path(dir) / "records.bin";
  if (fs::exists(records) && fs::file_size(records) > 0) {
    if (!resume) fail("{}: already holds a dataset; rerun with --resume to continue it, or choose another -o", dir);
    uint64_t end = 0;
    read_records(records.string(), [&](TeacherRecord&& r) {
      done_.insert({r.prompt_index, r.sample_index});
      ++records_;
    }, &end);
    repaired_ = fs::file_size(records) - end;
    if (repaired_ > 0) fs::resize_file(records, end);  // a torn record from a kill
    std::ifstream m(fs::path(dir) / "manifest.json");
    if (m) {
      try {
        manifest_ = json::parse(m);
      } catch (const json::exception&) {
        manifest_ = json::object();  // rewritten at the end
      }
    }
  }
  file_ = std::fopen(records.c_str(), "ab");
  if (!file_) fail("{}: cannot open for appending: {}", records.string(), std::strerror(errno));
}

TeacherDatasetWriter::~TeacherDatasetWriter() {
  if (file_) std::fclose(file_);
}

void TeacherDatasetWriter::append(const TeacherRecord& r) {
  const std::string bytes = encode_record(r);
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size() || std::fflush(file_) != 0 ||
      ::fsync(::fileno(file_)) != 0)
    fail("{}/records.bin: write failed: {}", dir_, std::strerror(errno));
  done_.insert({r.prompt_index, r.sample_index});
  ++records_;
}

json dataset_stats(const std::string& dir) {
  const std::string path = (fs::path(dir) / "records.bin").string();
  int64_t records = 0, prompt_tokens = 0, completion_tokens = 0, soft = 0, finished = 0, top1_is_text = 0;
  double topk_bytes = 0, entropy = 0, top1_mass = 0, topk_mass = 0;
  int k = 0;
  read_records(path, [&](TeacherRecord&& r) {
    ++records;
    k = std::max(k, r.k);
    for (size_t j = 0; j < r.soft.size(); ++j) {
      if (!r.soft[j]) continue;
      ++soft;
      // What a soft position says beyond its text token: the teacher's entropy over its top-k
      // (a lower bound of the full entropy: the tail's mass is left out), its top-1 probability,
      // and whether its top-1 is the token the text has (sampled text can take another).
      const float* lp = r.topk_logp.data() + j * size_t(r.k);
      const int32_t* id = r.topk_ids.data() + j * size_t(r.k);
      int best = 0;
      for (int i = 0; i < r.k; ++i) {
        const double p = std::exp(double(lp[i]));
        entropy -= p * double(lp[i]);
        topk_mass += p;
        if (lp[i] > lp[best]) best = i;
      }
      top1_mass += std::exp(double(lp[best]));
      top1_is_text += id[best] == r.completion[j];
    }
    prompt_tokens += int64_t(r.prompt.size());
    completion_tokens += int64_t(r.completion.size());
    finished += r.finished;
    if (r.k > 0) {  // what the soft labels cost: the record's size with and without them
      const double with = double(encode_record(r).size());
      r.k = 0;
      topk_bytes += with - double(encode_record(r).size());
    }
  });
  const double bytes = double(fs::file_size(path));
  return {{"records", records}, {"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens},
          {"finished", finished}, {"soft_positions", soft}, {"top_k", k}, {"bytes", bytes},
          {"bytes_per_labelled_token", completion_tokens ? bytes / double(completion_tokens) : 0.0},
          {"topk_bytes_per_soft_position", soft ? topk_bytes / double(soft) : 0.0},
          {"soft_topk_entropy", soft ? entropy / double(soft) : 0.0},
          {"soft_top1_prob", soft ? top1_mass / double(soft) : 0.0},
          {"soft_topk_mass", soft ? topk_mass / double(soft) : 0.0},
          {"soft_top1_is_text", soft ? double(top1_is_text) / double(soft) : 0.0}};
}

void TeacherDatasetWriter::finish(const std::function<std::string(const std::vector<int32_t>&)>& detok) {
  std::fflush(file_);
  manifest_["format"] = 1;
  manifest_["counts"] = dataset_stats(dir_);
  const std::string m = manifest_.dump(2) + "\n";
  write_file_atomic((fs::path(dir_) / "manifest.json").string(), m.data(), m.size());
  std::string text;
  read_records((fs::path(dir_) / "records.bin").string(), [&](TeacherRecord&& r) {
    text += json{{"prompt_index", r.prompt_index}, {"sample", r.sample_index}, {"prompt", detok(r.prompt)},
                 {"completion", detok(r.completion)}, {"finished", r.finished}}
                .dump() +
            "\n";
  });
  write_file_atomic((fs::path(dir_) / "text.jsonl").string(), text.data(), text.size());
}

nlohmann::json read_teacher_manifest(const std::string& dir) {
  const fs::path path = fs::path(dir) / "manifest.json";
  std::ifstream in(path);
  if (!in) fail("{}: no manifest.json (not a teacher dataset)", dir);
  const std::string text(std::istreambuf_iterator<char>(in), {});
  json m = jsonf::parse(text, path.string());
  if (!m.is_object()) fail("{}: expected a JSON object", path.string());
  return m;
}

}  // namespace distill

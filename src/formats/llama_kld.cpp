#include "formats/llama_kld.h"

#include "core/error.h"
#include "formats/mapped_file.h"

#include <cstring>

namespace distill {

namespace {

template <typename T>
T read_at(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

LlamaLogitsFile LlamaLogitsFile::open(const std::string& path) {
  LlamaLogitsFile f;
  f.file_ = MappedFile::open(path);
  const unsigned char* d = f.file_->data();
  const size_t size = f.file_->size();
  if (size < 20 || std::memcmp(d, "_logits_", 8) != 0)
    fail("{}: not a llama-perplexity logits file (it starts with \"_logits_\"; made by --kl-divergence-base)", path);
  f.n_ctx_ = read_at<uint32_t>(d + 8);
  f.n_vocab_ = read_at<int32_t>(d + 12);
  f.n_chunk_ = read_at<int32_t>(d + 16);
  if (f.n_ctx_ < 4 || f.n_ctx_ > (1 << 24)) fail("{}: n_ctx {} is out of range", path, f.n_ctx_);
  if (f.n_vocab_ < 2 || f.n_vocab_ > (1 << 24)) fail("{}: n_vocab {} is out of range", path, f.n_vocab_);
  if (f.n_chunk_ < 1 || f.n_chunk_ > (1 << 20)) fail("{}: n_chunk {} is out of range", path, f.n_chunk_);
  f.tokens_at_ = 20;
  f.rows_at_ = f.tokens_at_ + size_t(f.n_chunk_ * f.n_ctx_) * 4;
  f.row_bytes_ = 8 + 2 * size_t(2 * ((f.n_vocab_ + 1) / 2));
  const size_t want = f.rows_at_ + size_t(f.n_chunk_ * f.rows_per_chunk()) * f.row_bytes_;
  if (size != want)
    fail("{}: {} bytes, but {} chunks of {} positions over {} tokens need {}", path, size, f.n_chunk_, f.n_ctx_, f.n_vocab_, want);
  return f;
}

const int32_t* LlamaLogitsFile::tokens(int64_t chunk) const {
  return reinterpret_cast<const int32_t*>(file_->data() + tokens_at_) + chunk * n_ctx_;
}

void LlamaLogitsFile::log_probs(int64_t chunk, int64_t row, float* out) const {
  const unsigned char* r = file_->data() + rows_at_ + size_t(chunk * rows_per_chunk() + row) * row_bytes_;
  const float scale = read_at<float>(r), min = read_at<float>(r + 4);
  for (int64_t i = 0; i < n_vocab_; ++i) out[i] = min + scale * float(read_at<uint16_t>(r + 8 + 2 * i));
}

}  // namespace distill

#include "core/atomic_file.h"

#include "core/error.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace distill {

void AtomicFileWriter::FileCloser::operator()(std::FILE* f) const {
  if (f) std::fclose(f);
}

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  tmp_path_ = path_ + ".tmp." + std::to_string(::getpid());
  file_.reset(std::fopen(tmp_path_.c_str(), "wb"));
  if (!file_) fail("{}: cannot create: {}", tmp_path_, std::strerror(errno));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!committed_) {
    file_.reset();
    ::unlink(tmp_path_.c_str());
  }
}

void AtomicFileWriter::write(const void* data, size_t size) {
  if (size && std::fwrite(data, 1, size, file_.get()) != size)
    fail("{}: write failed: {}", tmp_path_, std::strerror(errno));
}

void AtomicFileWriter::commit() {
  if (std::fflush(file_.get()) != 0 || ::fsync(::fileno(file_.get())) != 0)
    fail("{}: flush failed: {}", tmp_path_, std::strerror(errno));
  if (std::fclose(file_.release()) != 0) fail("{}: close failed: {}", tmp_path_, std::strerror(errno));
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0)
    fail("{}: cannot rename into place: {}", path_, std::strerror(errno));
  committed_ = true;
}

std::string read_text_file(const std::string& path, const std::string& what) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) fail("{}: cannot open the {}: {}", path, what, std::strerror(errno));
  std::string out;
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) out.append(buf, n);
  if (std::ferror(f.get())) fail("{}: read error in the {}", path, what);
  return out;
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  AtomicFileWriter w(path);
  w.write(data, size);
  w.commit();
}

}  // namespace distill

// npm packages for the tests that compare against (or drive us with) real JavaScript clients,
// fetched once into the build tree with `npm pack` under a file lock (ctest runs tests side by
// side). Without node/npm or the registry the caller skips with the reason.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace distill::test {

inline std::string run_capture(const std::string& cmd, int* status) {
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *status = pclose(p);
  return out;
}

struct NpmPackage {
  std::string spec;    // e.g. "@lenml/tokenizers@3.7.2", "openai@5.23.2"
  std::string subdir;  // unpacked into DISTILL_NPM_CACHE/<subdir>/package
};

// The cache directory, or "" with *reason set when a package cannot be had.
inline std::string fetch_npm_packages(const std::vector<NpmPackage>& pkgs, std::string* reason) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(DISTILL_NPM_CACHE);
  int status = 0;
  run_capture("node --version >/dev/null 2>&1 && npm --version >/dev/null 2>&1", &status);
  if (status != 0) return *reason = "node or npm is not installed", "";
  fs::create_directories(dir);
  const int lock = ::open((dir / ".lock").c_str(), O_CREAT | O_RDWR, 0644);
  ::flock(lock, LOCK_EX);
  struct Unlock {
    int fd;
    ~Unlock() { ::flock(fd, LOCK_UN), ::close(fd); }
  } unlock{lock};
  for (const NpmPackage& p : pkgs) {
    if (fs::exists(dir / p.subdir / "package" / "package.json")) continue;
    // npm names the tarball scope-name-version.tgz: "@lenml/tokenizers@3.7.2" -> lenml-tokenizers-3.7.2.tgz
    std::string tgz = p.spec[0] == '@' ? p.spec.substr(1) : p.spec;
    for (char& c : tgz)
      if (c == '/' || c == '@') c = '-';
    tgz += ".tgz";
    const std::string out = run_capture("cd '" + dir.string() + "' && timeout 300 npm pack --silent " + p.spec + " 2>&1", &status);
    if (status != 0 || !fs::exists(dir / tgz)) return *reason = "npm pack " + p.spec + " failed (registry unreachable?): " + out, "";
    fs::create_directories(dir / p.subdir);
    run_capture("tar xzf '" + (dir / tgz).string() + "' -C '" + (dir / p.subdir).string() + "'", &status);
    if (status != 0) return *reason = "cannot unpack " + tgz, "";
  }
  return dir.string();
}

}  // namespace distill::test

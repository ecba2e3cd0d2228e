#include "tasks/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace distill {

SandboxResult run_sandboxed(const std::vector<std::string>& argv, const std::string& input, const SandboxLimits& lim) {
  SandboxResult r;
  if (argv.empty()) return r.error = "no program", r;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0)
    return r.error = std::string("pipe: ") + std::strerror(errno), r;
  const pid_t pid = fork();
  if (pid < 0) return r.error = std::string("fork: ") + std::strerror(errno), r;
  if (pid == 0) {
    // child: own process group (so the whole tree can be killed), limits, no network, exec
    setpgid(0, 0);
    auto die = [&](const char* what) {
      const std::string msg = std::string(what) + ": " + std::strerror(errno);
      (void)!write(err_pipe[1], msg.data(), msg.size());
      _exit(127);
    };
    if (lim.isolate_network && unshare(CLONE_NEWNET) != 0) {
      // unprivileged: a user namespace first makes the network namespace allowed
      if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) die("cannot isolate the network (unshare)");
    }
    struct rlimit mem {lim.memory_bytes, lim.memory_bytes};
    setrlimit(RLIMIT_AS, &mem);
    const rlim_t cpu = rlim_t(lim.timeout_s) + 1;
    struct rlimit cpu_lim {cpu, cpu + 1};
    setrlimit(RLIMIT_CPU, &cpu_lim);
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    const int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    die("cannot run the program");
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  signal(SIGPIPE, SIG_IGN);  // the program may exit without reading its input
  // Feed stdin and read stdout together, so neither side blocks on a full pipe.
  size_t written = 0;
  fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
  if (input.empty()) close(in_pipe[1]), in_pipe[1] = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(lim.timeout_s);
  char buf[65536];
  bool out_open = true;
  while (out_open) {
    const double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      r.timed_out = true;
      break;
    }
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {in_pipe[1], POLLOUT, 0}};
    const int n = poll(fds, in_pipe[1] >= 0 ? 2 : 1, int(left * 1000) + 1);
    if (n < 0 && errno != EINTR) break;
    if (in_pipe[1] >= 0 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t w = write(in_pipe[1], input.data() + written, input.size() - written);
      if (w > 0) written += size_t(w);
      if (w < 0 || written == input.size()) close(in_pipe[1]), in_pipe[1] = -1;
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t got = read(out_pipe[0], buf, sizeof buf);
      if (got <= 0) out_open = false;
      else if (r.out.size() < lim.max_output) r.out.append(buf, std::min<size_t>(size_t(got), lim.max_output - r.out.size()));
    }
  }
  if (in_pipe[1] >= 0) close(in_pipe[1]);
  close(out_pipe[0]);
  if (r.timed_out) kill(-pid, SIGKILL), kill(pid, SIGKILL);
  int status = 0;
  // the output pipe closed or time ran out: wait, but never past the deadline plus a grace period
  for (int i = 0; i < 200; ++i) {
    const pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (i == 100 || std::chrono::steady_clock::now() > deadline) kill(-pid, SIGKILL), kill(pid, SIGKILL), r.timed_out = r.timed_out || i == 100;
    usleep(10000);
  }
  if (waitpid(pid, &status, WNOHANG) == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  const ssize_t e = read(err_pipe[0], buf, sizeof buf);
  if (e > 0) r.error.assign(buf, size_t(e));
  close(err_pipe[0]);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

}  // namespace distill

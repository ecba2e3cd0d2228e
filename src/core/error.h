// Errors. Two kinds, kept apart on purpose:
//  - distill::Error: anything a user or the environment can cause (a bad file, flag, request).
//    Thrown with context, caught only at the boundaries (CLI main, HTTP routes, after OpenMP).
//  - DISTILL_ASSERT: a broken invariant of our own code. On in release builds; prints file:line
//    and aborts, because continuing would produce silent garbage.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace distill {

class Error : public std::runtime_error {
public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws distill::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// Runs `fn`; if it throws distill::Error, rethrows with "context: " prepended so the message
// names the file / tensor / field that was being processed.
template <typename Fn>
auto with_context(const std::string& context, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    throw Error(context + ": " + e.what());
  }
}

[[noreturn]] void assert_failed(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace distill

#define DISTILL_ASSERT(cond)                                                   \
  do {                                                                         \
    if (!(cond)) ::distill::assert_failed(#cond, __FILE__, __LINE__, {});      \
  } while (0)

#define DISTILL_ASSERT_MSG(cond, ...)                                          \
  do {                                                                         \
    if (!(cond))                                                               \
      ::distill::assert_failed(#cond, __FILE__, __LINE__, fmt::format(__VA_ARGS__)); \
  } while (0)

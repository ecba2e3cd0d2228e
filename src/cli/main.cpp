// distill: the command-line entry point. Errors a user can cause arrive here as distill::Error
// and end the program with the message and exit code 1.
#include "cli/commands.h"
#include "core/data_parallel.h"
#include "core/error.h"
#include "core/threads.h"
#include "model/kv_cache.h"
#include "model/provenance.h"  // kToolVersion

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

int main(int argc, char** argv) {
  distill::DataParallel::init(&argc, &argv);
  struct Finalize {
    ~Finalize() { distill::DataParallel::finalize(); }
  } finalize;
  CLI::App app{"distill: run, label, train, reinforce, evaluate, serve and export small language models"};
  app.set_version_flag("--version", distill::kToolVersion);
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("-t,--threads", threads, "Threads for every kernel (default: physical cores)")
      ->check(CLI::NonNegativeNumber);
  std::string kv_cache = "f16";
  app.add_option("--kv-cache", kv_cache, "KV cache elements of every decode: f16 (default, half the memory) or f32")
      ->check(CLI::IsMember({"f16", "f32"}));
  app.parse_complete_callback([&] {
    distill::set_num_threads(threads);
    distill::set_default_kv_cache_type(kv_cache == "f32" ? distill::DType::F32 : distill::DType::F16);
  });

  distill::register_forward(app);
  distill::register_run(app);
  distill::register_init(app);
  distill::register_tokenize(app);
  distill::register_train(app);
  distill::register_rl(app);
  distill::register_label(app);
  distill::register_dataset(app);
  distill::register_eval(app);
  distill::register_serve(app);
  distill::register_convert(app);
  distill::register_demo(app);
  distill::register_bench(app);
  distill::register_compare(app);
  distill::register_watermark(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const distill::Error& e) {
    // Under mpirun the other ranks may wait in a collective: end them all.
    if (distill::DataParallel::size() > 1)
      distill::DataParallel::abort(fmt::format("distill: error (rank {}): {}", distill::DataParallel::rank(), e.what()), 1);
    std::fprintf(stderr, "distill: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "distill: error: out of memory\n");
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // a path the user gave that the library could not use: say so rather than abort
    std::fprintf(stderr, "distill: error: %s\n", e.what());
    return 1;
  }
  return 0;
}

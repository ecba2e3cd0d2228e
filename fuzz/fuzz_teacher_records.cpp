// A teacher dataset's records.bin (checksummed records of prompt, completion and top-k).
#include "fuzz_common.h"
#include "formats/teacher_dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = distill::fuzz::input_file(data, size, ".records.bin");
  distill::fuzz::expect_clean([&] {
    uint64_t end = 0;
    distill::read_records(path, [](distill::TeacherRecord&& r) { (void)r; }, &end);
    if (end > size) std::abort();
  });
  return 0;
}

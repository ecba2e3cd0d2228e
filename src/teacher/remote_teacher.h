// A remote teacher: any OpenAI-compatible endpoint (POST /v1/chat/completions, or /v1/completions).
// The API key comes from an environment variable only — never the command line, the dataset or
// the logs. Requests run `concurrency` at a time under a client-side rate limit; 429, 5xx,
// timeouts, broken connections and unparseable bodies are retried with exponential backoff and
// jitter (Retry-After honoured); other 4xx fail the prompt at once. Prompts that still fail are
// reported, never silently dropped; a rerun with --resume retries only them.
//
// Answers become student records as teacher/remote_answer.h says (lossless from a `distill serve`
// with the student's vocabulary; byte-matched otherwise). Records are written in prompt order
// whatever order answers arrive in, so a killed and resumed run equals an uninterrupted one.
#pragma once

#include "teacher/label_prompts.h"
#include "teacher/local_teacher.h"
#include "formats/teacher_dataset.h"

#include <string>
#include <utility>
#include <vector>

namespace distill {

class Tokenizer;

struct RemoteSettings {
  std::string model;            // empty: the only model GET /models lists
  std::string api_key_env = "OPENAI_API_KEY";
  int concurrency = 4;
  double requests_per_s = 0;   // 0: no limit
  double timeout_s = 120;
  int retries = 6;
  double backoff_s = 1.0;      // first retry delay; doubles each time (with jitter), at most 60 s
  bool legacy_completions = false;
  std::string ca_file;         // PEM CA for an https teacher with its own certificate
};

struct RemoteReport {
  int64_t records = 0, tokens = 0, positions = 0, soft_positions = 0, requests = 0, retries = 0;
  double seconds = 0;
  std::vector<std::pair<uint64_t, std::string>> failed;  // prompt index, last error
};

RemoteReport label_with_remote_teacher(const std::string& base_url, const Tokenizer& tok,
                                       const std::vector<LabelPrompt>& prompts, const LabelSettings& s,
                                       const RemoteSettings& r, TeacherDatasetWriter& out);

}  // namespace distill

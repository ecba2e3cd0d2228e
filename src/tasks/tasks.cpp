#include "tasks/tasks.h"

#include "core/error.h"
#include "formats/json_fields.h"
#include "generate/batch_generate.h"

#include <fstream>

namespace distill {

using nlohmann::json;

std::vector<Task> read_tasks(const std::string& path, const Tokenizer& tok, const ChatTemplate* tmpl) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open", path);
  std::vector<Task> tasks;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    with_context(path + ":" + std::to_string(n), [&] {
      if (line.find_first_not_of(" \t\r") == std::string::npos) fail("empty line");
      Task t;
      t.task = jsonf::parse(line, "the line");
      if (!t.task.is_object()) fail("expected a JSON object");
      t.prompt = encode_prompt(tok, tmpl, prompt_messages(t.task));
      if (t.prompt.empty()) fail("the prompt encodes to no tokens");
      tasks.push_back(std::move(t));
    });
  }
  if (tasks.empty()) fail("{}: no tasks", path);
  return tasks;
}

TaskScore score_completion(const RewardSpec& spec, const Task& task, const std::string& completion, int64_t n_tokens,
                           int64_t max_tokens) {
  TaskScore s;
  s.reward = spec.score(task.task, completion, n_tokens, max_tokens, &s.terms);
  s.correct = s.reward > 0;
  for (const RewardTerm& t : spec.terms())
    if (t.kind == "answer" || t.kind == "worked") {  // correct: the final answer, whatever the steps
      s.correct = final_answer_right(task.task, completion);
      break;
    }
  return s;
}

TaskEval evaluate_task_accuracy(const Model& model, const Tokenizer& tok, const std::vector<Task>& tasks,
                                const RewardSpec& reward, int64_t max_new_tokens, int64_t samples, float temperature) {
  TaskEval r;
  r.samples = samples;
  r.tasks = int64_t(tasks.size());
  if (tasks.empty()) return r;
  double correct = 0, any = 0, reward_sum = 0;
  for (size_t b = 0; b < tasks.size(); b += 16) {
    std::vector<std::vector<int32_t>> prompts;
    for (size_t i = b; i < std::min(tasks.size(), b + 16); ++i) prompts.push_back(tasks[i].prompt);
    BatchGenerateOptions o;
    o.group = samples;
    o.max_new_tokens = max_new_tokens;
    o.sampler.temperature = samples == 1 ? 0.0f : temperature;
    o.sampler.top_k = 0, o.sampler.top_p = 1.0f, o.sampler.min_p = 0.0f;
    o.sampler.seed = 1234;
    const auto out = generate_batch(model, tok, prompts, o, nullptr);
    for (size_t p = 0; p < prompts.size(); ++p) {
      bool hit = false;
      for (int64_t g = 0; g < samples; ++g) {
        const SampledCompletion& c = out[p * size_t(samples) + size_t(g)];
        const TaskScore s = score_completion(reward, tasks[b + p], c.text, int64_t(c.completion.size()), max_new_tokens);
        correct += s.correct;
        reward_sum += s.reward;
        hit |= s.correct;
      }
      any += hit;
    }
  }
  r.accuracy = correct / double(tasks.size() * size_t(samples));
  r.pass_at_n = any / double(tasks.size());
  r.mean_reward = reward_sum / double(tasks.size() * size_t(samples));
  return r;
}

}  // namespace distill

// Drives a running `distill serve` with the official OpenAI SDK (from npm) and checks what a
// client sees. Usage: node openai_sdk_client.mjs <sdk index.mjs> <baseURL> <apiKey> <model>
// Prints one line per check; exits 1 on the first failure.
const [sdkPath, baseURL, apiKey, model] = process.argv.slice(2);
const { default: OpenAI } = await import(sdkPath);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });

function check(cond, what) {
  if (!cond) {
    console.log(`FAIL ${what}`);
    process.exit(1);
  }
  console.log(`ok   ${what}`);
}
const messages = [{ role: 'user', content: 'Say something' }];

// models
const models = await client.models.list();
check(models.data.length === 1 && models.data[0].id === model, 'models.list returns the served model');

// chat, not streamed, greedy, with logprobs
const chat = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 3 });
check(chat.object === 'chat.completion' && typeof chat.id === 'string', 'chat completion object');
const c0 = chat.choices[0];
check(typeof c0.message.content === 'string' && c0.message.role === 'assistant', 'assistant message');
check(['stop', 'length'].includes(c0.finish_reason), `finish_reason ${c0.finish_reason}`);
check(chat.usage.completion_tokens === c0.logprobs.content.length, 'one logprobs entry per completion token');
check(c0.logprobs.content.every((t) => t.top_logprobs.length === 3 && t.logprob <= 0 && Array.isArray(t.bytes)), 'top_logprobs: 3 per token');
check(c0.logprobs.content.every((t) => Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6), 'greedy picks the most likely token');

// chat, streamed with usage: same text as the non-streamed greedy answer
const stream = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
let text = '', finish = null, usage = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  for (const ch of chunk.choices) {
    text += ch.delta?.content ?? '';
    if (ch.finish_reason) finish = ch.finish_reason;
  }
}
check(chunks >= 3, `streamed ${chunks} chunks`);
check(text === c0.message.content, 'streamed text equals the non-streamed greedy text');
check(finish === c0.finish_reason, 'streamed finish_reason');
check(usage && usage.completion_tokens === chat.usage.completion_tokens, 'usage chunk at the end of the stream');

// n > 1 with a seed
const multi = await client.chat.completions.create({ model, messages, max_tokens: 8, n: 3, seed: 5, temperature: 1 });
check(multi.choices.length === 3 && multi.choices.map((c) => c.index).join() === '0,1,2', 'n = 3 gives three choices');

// stop strings: the text ends before the stop string and never contains it
// (a tiny random model writes random bytes: find a prompt whose greedy continuation holds two
// printable ASCII characters after its start, and use them as the stop string)
let free = null, prompt = null, stopAt = null;
for (const p of ['abc', 'hello', 'The', 'xyz', '123', 'Once upon', 'q', 'Zz', 'cat', 'dog', 'sun', 'moon']) {
  const r = await client.completions.create({ model, prompt: p, max_tokens: 16, temperature: 0 });
  const m = /[\x21-\x7e]{2}/.exec(r.choices[0].text.slice(1));
  if (r.choices[0].finish_reason === 'length' && m) {
    free = r, prompt = p, stopAt = m[0];
    break;
  }
}
check(free && free.object === 'text_completion', 'legacy completion');
const stopped = await client.completions.create({ model, prompt, max_tokens: 16, temperature: 0, stop: [stopAt] });
check(stopped.choices[0].text === free.choices[0].text.slice(0, free.choices[0].text.indexOf(stopAt)), 'stop string cuts the text');
check(stopped.choices[0].finish_reason === 'stop', 'finish_reason stop');

// legacy streaming
const ls = await client.completions.create({ model, prompt, max_tokens: 16, temperature: 0, stream: true });
let ltext = '';
for await (const chunk of ls) ltext += chunk.choices[0]?.text ?? '';
check(ltext === free.choices[0].text, 'streamed legacy text equals the non-streamed one');

// teacher scoring: echo + logprobs + max_tokens 0
const scored = await client.completions.create({ model, prompt: 'score this', max_tokens: 0, echo: true, logprobs: 2 });
const lp = scored.choices[0].logprobs;
check(scored.choices[0].text === 'score this' && lp.tokens.length === 10 && lp.token_logprobs[0] === null && lp.token_logprobs[9] < 0,
      'echo scoring returns prompt log-probs');

// errors surface as the SDK's typed errors
async function expectError(fn, cls, status, what) {
  try {
    await fn();
    check(false, what);
  } catch (e) {
    check(e instanceof cls && e.status === status, `${what} -> ${e.constructor.name} ${e.status}`);
  }
}
await expectError(() => client.chat.completions.create({ model, messages, temperature: 5 }), OpenAI.BadRequestError, 400, 'temperature out of range');
await expectError(() => client.chat.completions.create({ model: 'no-such-model', messages }), OpenAI.NotFoundError, 404, 'unknown model');
const badKey = new OpenAI({ baseURL, apiKey: 'sk-wrong', maxRetries: 0 });
await expectError(() => badKey.chat.completions.create({ model, messages }), OpenAI.AuthenticationError, 401, 'wrong API key');
console.log('all checks passed');

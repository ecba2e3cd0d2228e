// Reference encodings for the tokenizer conformance test, from @lenml/tokenizers (a JavaScript
// port of the Hugging Face tokenizers used by transformers.js).
//   node encode.js LIB_DIR MODEL_DIR CORPUS.json  ->  JSON array (one array of ids per text)
const [lib, modelDir, corpusPath] = process.argv.slice(2);
const fs = require("fs");
const path = require("path");
const { TokenizerLoader } = require(path.join(lib, "dist", "main.js"));
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(modelDir, "tokenizer.json"), "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(path.join(modelDir, "tokenizer_config.json"), "utf8")),
});
// The corpus is UTF-8 bytes given as base64, so invalid sequences reach the tokenizer the way a
// UTF-8 decoder hands them over (each maximal invalid subpart becomes U+FFFD).
const corpus = JSON.parse(fs.readFileSync(corpusPath, "utf8"));
const out = corpus.map((b64) => Array.from(tokenizer.encode(Buffer.from(b64, "base64").toString("utf8"))));
process.stdout.write(JSON.stringify(out));

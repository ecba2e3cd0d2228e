#include "tokenizer/text_pipeline.h"

#include "core/error.h"
#include "core/regex.h"
#include "tokenizer/utf8.h"

#include "formats/json_fields.h"

#include <nlohmann/json.hpp>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <array>

namespace distill {

using nlohmann::json;

// ---------------------------------------------------------------------------- ByteLevel mapping
// GPT-2 maps each byte to a printable character: the printable Latin-1 bytes map to themselves,
// the other 68 to U+0100 upwards in byte order.
namespace {
struct ByteMap {
  std::array<std::string, 256> to_char;
  std::array<int, 512> from_cp;
  ByteMap() {
    from_cp.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      const int cp = printable ? b : next++;
      utf8_append(to_char[size_t(b)], uint32_t(cp));
      from_cp[size_t(cp)] = b;
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

std::string pattern_of(const json& j, const std::string& path, bool* is_regex) {
  const json& p = jsonf::get_object(j, "pattern", path);
  if (jsonf::has(p, "Regex")) return *is_regex = true, jsonf::get_string(p, "Regex", path + ".pattern");
  if (jsonf::has(p, "String")) return *is_regex = false, jsonf::get_string(p, "String", path + ".pattern");
  fail("{}: pattern must be {{\"Regex\"}} or {{\"String\"}}", path);
}

// Byte ranges of every occurrence of a literal or a regex.
std::vector<std::pair<size_t, size_t>> find_pattern(const std::string& text, const std::string& pattern, const Regex* re) {
  if (re) return re->find_all(text);
  std::vector<std::pair<size_t, size_t>> out;
  if (pattern.empty()) return out;
  for (size_t p = text.find(pattern); p != std::string::npos; p = text.find(pattern, p + pattern.size()))
    out.push_back({p, p + pattern.size()});
  return out;
}

std::string replace_all(const std::string& text, const std::vector<std::pair<size_t, size_t>>& spans, const std::string& with) {
  std::string out;
  size_t last = 0;
  for (auto [b, e] : spans) out.append(text, last, b - last), out += with, last = e;
  return out.append(text, last, std::string::npos);
}

}  // namespace

const std::string& byte_to_unicode(unsigned char b) { return byte_map().to_char[b]; }
int unicode_to_byte(uint32_t cp) { return cp < 512 ? byte_map().from_cp[cp] : -1; }

// ---------------------------------------------------------------------------- normalizers
namespace {

class SequenceNormalizer : public Normalizer {
public:
  std::vector<std::unique_ptr<Normalizer>> parts;
  std::string normalize(const std::string& t) const override {
    std::string s = t;
    for (const auto& p : parts) s = p->normalize(s);
    return s;
  }
};

class UnicodeNormalizer : public Normalizer {  // NFC / NFKC through ICU
public:
  explicit UnicodeNormalizer(bool compat) {
    UErrorCode err = U_ZERO_ERROR;
    norm_ = compat ? icu::Normalizer2::getNFKCInstance(err) : icu::Normalizer2::getNFCInstance(err);
    if (U_FAILURE(err)) fail("ICU normaliser unavailable: {}", u_errorName(err));
  }
  std::string normalize(const std::string& t) const override {
    bool ascii = true;
    for (unsigned char c : t) ascii &= c < 0x80;
    if (ascii) return t;  // ASCII is already in every normal form
    UErrorCode err = U_ZERO_ERROR;
    const icu::UnicodeString in = icu::UnicodeString::fromUTF8(t);
    if (norm_->isNormalized(in, err) && U_SUCCESS(err)) return t;
    err = U_ZERO_ERROR;
    icu::UnicodeString out = norm_->normalize(in, err);
    std::string s;
    out.toUTF8String(s);
    return s;
  }

private:
  const icu::Normalizer2* norm_;
};

class PrependNormalizer : public Normalizer {
public:
  std::string prefix;
  std::string normalize(const std::string& t) const override { return t.empty() ? t : prefix + t; }
};

class ReplaceNormalizer : public Normalizer {
public:
  std::string pattern, content;
  std::unique_ptr<Regex> re;
  std::string normalize(const std::string& t) const override { return replace_all(t, find_pattern(t, pattern, re.get()), content); }
};

}  // namespace

std::unique_ptr<Normalizer> Normalizer::from_json(const json& j, const std::string& path) {
  if (j.is_null()) return nullptr;
  const std::string type = jsonf::get_string(j, "type", path, "");
  if (type == "Sequence") {
    auto s = std::make_unique<SequenceNormalizer>();
    size_t i = 0;
    for (const json& p : jsonf::get_array(j, "normalizers", path)) {
      auto n = from_json(p, path + ".normalizers[" + std::to_string(i++) + "]");
      if (n) s->parts.push_back(std::move(n));
    }
    return s;
  }
  if (type == "NFC" || type == "NFKC") return std::make_unique<UnicodeNormalizer>(type == "NFKC");
  if (type == "Prepend") {
    auto p = std::make_unique<PrependNormalizer>();
    p->prefix = jsonf::get_string(j, "prepend", path);
    return p;
  }
  if (type == "Replace") {
    auto r = std::make_unique<ReplaceNormalizer>();
    bool is_regex = false;
    r->pattern = pattern_of(j, path, &is_regex);
    if (is_regex) r->re = std::make_unique<Regex>(r->pattern);
    r->content = jsonf::get_string(j, "content", path);
    return r;
  }
  fail("{}: type '{}' is not supported (supported normalizers: Sequence, NFC, NFKC, Prepend, Replace)", path, type);
}

// ---------------------------------------------------------------------------- pre-tokenizers
namespace {

class SequencePreTokenizer : public PreTokenizer {
public:
  std::vector<std::unique_ptr<PreTokenizer>> parts;
  void split(std::vector<std::string>& pieces) const override {
    for (const auto& p : parts) p->split(pieces);
  }
};

enum class SplitBehavior { Isolated, Removed, MergedWithPrevious, MergedWithNext };

// Splits each piece at the matches of a pattern, keeping or attaching the matched parts.
void split_on(std::vector<std::string>& pieces, const std::string& pattern, const Regex* re, SplitBehavior how) {
  std::vector<std::string> out;
  for (const std::string& piece : pieces) {
    size_t last = 0;
    std::string pending;  // MergedWithNext: a match waiting for the text after it
    for (auto [b, e] : find_pattern(piece, pattern, re)) {
      std::string gap = piece.substr(last, b - last), match = piece.substr(b, e - b);
      switch (how) {
        case SplitBehavior::Isolated:
          if (!gap.empty()) out.push_back(gap);
          out.push_back(match);
          break;
        case SplitBehavior::Removed:
          if (!gap.empty()) out.push_back(gap);
          break;
        case SplitBehavior::MergedWithPrevious:
          if (!gap.empty() || out.empty()) out.push_back(gap + match);
          else out.back() += match;
          break;
        case SplitBehavior::MergedWithNext:
          if (!(pending + gap).empty()) out.push_back(pending + gap);
          pending = match;
          break;
      }
      last = e;
    }
    std::string rest = pending + piece.substr(last);
    if (!rest.empty()) out.push_back(rest);
  }
  pieces = std::move(out);
}

class SplitPreTokenizer : public PreTokenizer {
public:
  std::string pattern;
  std::unique_ptr<Regex> re;
  SplitBehavior how;
  void split(std::vector<std::string>& pieces) const override { split_on(pieces, pattern, re.get(), how); }
};

// The GPT-2 pre-tokenizer regex, used by ByteLevel with use_regex.
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer : public PreTokenizer {
public:
  bool add_prefix_space = false;
  std::unique_ptr<Regex> re;  // null unless use_regex
  void split(std::vector<std::string>& pieces) const override {
    if (add_prefix_space && !pieces.empty() && !pieces[0].empty() && pieces[0][0] != ' ') pieces[0] = " " + pieces[0];
    if (re) split_on(pieces, "", re.get(), SplitBehavior::Isolated);
    for (std::string& p : pieces) {
      std::string mapped;
      for (unsigned char b : p) mapped += byte_to_unicode(b);
      p = std::move(mapped);
    }
  }
};

class MetaspacePreTokenizer : public PreTokenizer {
public:
  std::string replacement = "\xe2\x96\x81";  // ▁
  std::string scheme = "always";            // always | first | never
  bool split_pieces = true;
  void split(std::vector<std::string>& pieces) const override {
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::string s = replace_all(pieces[i], find_pattern(pieces[i], " ", nullptr), replacement);
      const bool prepend = scheme == "always" || (scheme == "first" && i == 0);
      if (prepend && s.compare(0, replacement.size(), replacement) != 0) s = replacement + s;
      pieces[i] = std::move(s);
    }
    if (split_pieces) split_on(pieces, replacement, nullptr, SplitBehavior::MergedWithNext);
  }
};

class DigitsPreTokenizer : public PreTokenizer {
public:
  std::unique_ptr<Regex> re;
  void split(std::vector<std::string>& pieces) const override { split_on(pieces, "", re.get(), SplitBehavior::Isolated); }
};

}  // namespace

std::unique_ptr<PreTokenizer> PreTokenizer::from_json(const json& j, const std::string& path) {
  if (j.is_null()) return nullptr;
  const std::string type = jsonf::get_string(j, "type", path, "");
  if (type == "Sequence") {
    auto s = std::make_unique<SequencePreTokenizer>();
    size_t i = 0;
    for (const json& p : jsonf::get_array(j, "pretokenizers", path)) {
      auto t = from_json(p, path + ".pretokenizers[" + std::to_string(i++) + "]");
      if (t) s->parts.push_back(std::move(t));
    }
    return s;
  }
  if (type == "Split") {
    auto s = std::make_unique<SplitPreTokenizer>();
    bool is_regex = false;
    s->pattern = pattern_of(j, path, &is_regex);
    if (is_regex) s->re = std::make_unique<Regex>(s->pattern);
    if (jsonf::get_bool(j, "invert", path, false)) fail("{}: Split with invert: true is not supported", path);
    const std::string b = jsonf::get_string(j, "behavior", path, "Isolated");
    if (b == "Isolated") s->how = SplitBehavior::Isolated;
    else if (b == "Removed") s->how = SplitBehavior::Removed;
    else if (b == "MergedWithPrevious") s->how = SplitBehavior::MergedWithPrevious;
    else if (b == "MergedWithNext") s->how = SplitBehavior::MergedWithNext;
    else fail("{}: Split behavior '{}' is not supported", path, b);
    return s;
  }
  if (type == "ByteLevel") {
    auto b = std::make_unique<ByteLevelPreTokenizer>();
    b->add_prefix_space = jsonf::get_bool(j, "add_prefix_space", path, false);
    if (jsonf::get_bool(j, "use_regex", path, true)) b->re = std::make_unique<Regex>(kGpt2Pattern);
    return b;
  }
  if (type == "Metaspace") {
    auto m = std::make_unique<MetaspacePreTokenizer>();
    m->replacement = jsonf::get_string(j, "replacement", path, m->replacement);
    if (jsonf::has(j, "prepend_scheme")) m->scheme = jsonf::get_string(j, "prepend_scheme", path);
    else if (jsonf::has(j, "add_prefix_space")) m->scheme = jsonf::get_bool(j, "add_prefix_space", path, false) ? "always" : "never";
    m->split_pieces = jsonf::get_bool(j, "split", path, true);
    return m;
  }
  if (type == "Digits") {
    auto d = std::make_unique<DigitsPreTokenizer>();
    d->re = std::make_unique<Regex>(jsonf::get_bool(j, "individual_digits", path, false) ? R"(\p{N})" : R"(\p{N}+)");
    return d;
  }
  fail("{}: type '{}' is not supported (supported pre-tokenizers: Sequence, Split, ByteLevel, Metaspace, Digits)", path, type);
}

// ---------------------------------------------------------------------------- decoders
namespace tok {
namespace {

class SequenceDecoder : public TokenDecoder {
public:
  std::vector<std::unique_ptr<TokenDecoder>> parts;
  void decode(std::vector<std::string>& t, bool at_start) const override {
    for (const auto& p : parts) p->decode(t, at_start);
  }
};

class ByteLevelDecoder : public TokenDecoder {
public:
  void decode(std::vector<std::string>& tokens, bool) const override {
    for (std::string& t : tokens) {
      std::string bytes;
      size_t i = 0;
      while (i < t.size()) {
        const size_t begin = i;
        const int b = unicode_to_byte(utf8_next(t, i));
        if (b >= 0) bytes += char(b);
        else bytes.append(t, begin, i - begin);  // not a ByteLevel character: keep as is
      }
      t = std::move(bytes);
    }
  }
};

class ReplaceDecoder : public TokenDecoder {
public:
  std::string pattern, content;
  void decode(std::vector<std::string>& tokens, bool) const override {
    for (std::string& t : tokens) t = replace_all(t, find_pattern(t, pattern, nullptr), content);
  }
};

class ByteFallbackDecoder : public TokenDecoder {  // "<0x41>" -> the byte 0x41
public:
  void decode(std::vector<std::string>& tokens, bool) const override {
    for (std::string& t : tokens) {
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        const int v = std::stoi(t.substr(3, 2), nullptr, 16);
        t = std::string(1, char(v));
      }
    }
  }
};

class FuseDecoder : public TokenDecoder {
public:
  void decode(std::vector<std::string>& tokens, bool) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    tokens.assign(1, all);
  }
};

class StripDecoder : public TokenDecoder {
public:
  std::string content;
  int start = 0, stop = 0;
  void decode(std::vector<std::string>& tokens, bool at_start) const override {
    if (tokens.empty()) return;
    if (at_start)
      for (int k = 0; k < start && tokens.front().compare(0, content.size(), content) == 0; ++k)
        tokens.front().erase(0, content.size());
    for (int k = 0; k < stop && tokens.back().size() >= content.size() &&
                    tokens.back().compare(tokens.back().size() - content.size(), content.size(), content) == 0;
         ++k)
      tokens.back().erase(tokens.back().size() - content.size());
  }
};

class MetaspaceDecoder : public TokenDecoder {
public:
  std::string replacement = "\xe2\x96\x81";
  bool strip_leading = true;
  void decode(std::vector<std::string>& tokens, bool at_start) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = replace_all(tokens[i], find_pattern(tokens[i], replacement, nullptr), " ");
      if (i == 0 && at_start && strip_leading && !tokens[i].empty() && tokens[i][0] == ' ') tokens[i].erase(0, 1);
    }
  }
};

}  // namespace

std::unique_ptr<TokenDecoder> TokenDecoder::from_json(const json& j, const std::string& path) {
  if (j.is_null()) return nullptr;
  const std::string type = jsonf::get_string(j, "type", path, "");
  if (type == "Sequence") {
    auto s = std::make_unique<SequenceDecoder>();
    size_t i = 0;
    for (const json& p : jsonf::get_array(j, "decoders", path)) {
      auto d = from_json(p, path + ".decoders[" + std::to_string(i++) + "]");
      if (d) s->parts.push_back(std::move(d));
    }
    return s;
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    auto r = std::make_unique<ReplaceDecoder>();
    bool is_regex = false;
    r->pattern = pattern_of(j, path, &is_regex);
    if (is_regex) fail("{}: Replace decoder with a regex is not supported", path);
    r->content = jsonf::get_string(j, "content", path);
    return r;
  }
  if (type == "Strip") {
    auto s = std::make_unique<StripDecoder>();
    s->content = jsonf::get_string(j, "content", path, " ");
    s->start = int(jsonf::get_int(j, "start", path, 0, 1 << 20, 0));
    s->stop = int(jsonf::get_int(j, "stop", path, 0, 1 << 20, 0));
    return s;
  }
  if (type == "Metaspace") {
    auto m = std::make_unique<MetaspaceDecoder>();
    m->replacement = jsonf::get_string(j, "replacement", path, m->replacement);
    const std::string scheme = jsonf::has(j, "prepend_scheme") ? jsonf::get_string(j, "prepend_scheme", path)
                               : jsonf::get_bool(j, "add_prefix_space", path, true) ? "always" : "never";
    m->strip_leading = scheme != "never";
    return m;
  }
  fail("{}: type '{}' is not supported (supported decoders: Sequence, ByteLevel, ByteFallback, Fuse, Replace, Strip, "
       "Metaspace)", path, type);
}

}  // namespace tok
}  // namespace distill

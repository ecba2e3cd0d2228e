// The web pages of `distill serve` (src/serve/web: the chat at /, the owner's console at
// /console), compiled into the binary by cmake/embed_files.cmake: no files to install, no CDN.
// Here in core because training reports inline the same style sheet (train/report).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace distill {

struct WebAsset {
  const char* path;          // "/web/chat.js"
  const char* content_type;
  const unsigned char* data;
  size_t size;
};

const std::vector<WebAsset>& web_assets();
// The asset's bytes as text ("" if there is none).
std::string web_asset_text(const std::string& path);

}  // namespace distill

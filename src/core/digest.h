// SHA-256 (OpenSSL's EVP): key hashes, watermark keys, weight and dataset fingerprints.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace distill {

std::string sha256_hex(const std::string& data);
// The first 8 bytes of SHA-256(data), big-endian: a 64-bit seed no one can choose to collide.
uint64_t sha256_u64(const std::string& data);
// SHA-256 of a whole file, read in chunks (throws distill::Error naming the file).
std::string sha256_file_hex(const std::string& path);

}  // namespace distill

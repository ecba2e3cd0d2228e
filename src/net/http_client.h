// A small HTTP(S) client for JSON APIs: one POST with a timeout, its failure classified so that
// callers can decide what to retry. Transport only: no knowledge of any API.
#pragma once

#include <map>
#include <string>

namespace distill {

struct HttpResult {
  enum class Kind { Ok, HttpError, Timeout, ConnectionError } kind = Kind::ConnectionError;
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string error;                           // transport failure, for messages
};

class HttpClient {
public:
  // base: "http://host:port" or "https://host" (a path prefix such as /v1 is kept for post()).
  // HTTPS verifies the server's certificate against the system's CAs, or against ca_file (PEM)
  // when given (a self-signed server of your own).
  explicit HttpClient(const std::string& base_url, const std::string& ca_file = "");
  // POSTs body (application/json) to prefix + path. Never throws for network failures.
  HttpResult post_json(const std::string& path, const std::string& body, const std::map<std::string, std::string>& headers,
                       double timeout_s) const;
  // GETs prefix + path (e.g. /models). Never throws for network failures.
  HttpResult get(const std::string& path, const std::map<std::string, std::string>& headers, double timeout_s) const;
  const std::string& prefix() const { return prefix_; }

private:
  HttpResult send(const std::string& path, const std::string* body, const std::map<std::string, std::string>& headers,
                  double timeout_s) const;
  std::string scheme_host_port_, prefix_, ca_file_;
};

}  // namespace distill

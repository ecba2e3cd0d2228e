#include "net/http_client.h"

#include "core/error.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace distill {

HttpClient::HttpClient(const std::string& url, const std::string& ca_file) : ca_file_(ca_file) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos || (url.compare(0, scheme_end, "http") != 0 && url.compare(0, scheme_end, "https") != 0))
    fail("'{}' is not an http:// or https:// URL", url);
  const size_t path_start = url.find('/', scheme_end + 3);
  scheme_host_port_ = url.substr(0, path_start);
  prefix_ = path_start == std::string::npos ? "" : url.substr(path_start);
  while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
  if (!ca_file_.empty()) {
    std::FILE* f = std::fopen(ca_file_.c_str(), "r");
    if (!f) fail("--ca-file {}: cannot open", ca_file_);
    std::fclose(f);
  }
}

HttpResult HttpClient::post_json(const std::string& path, const std::string& body,
                                 const std::map<std::string, std::string>& headers, double timeout_s) const {
  return send(path, &body, headers, timeout_s);
}

HttpResult HttpClient::get(const std::string& path, const std::map<std::string, std::string>& headers, double timeout_s) const {
  return send(path, nullptr, headers, timeout_s);
}

// POST of *body (JSON), or GET when body is null.
HttpResult HttpClient::send(const std::string& path, const std::string* body,
                            const std::map<std::string, std::string>& headers, double timeout_s) const {
  HttpResult r;
  httplib::Client cli(scheme_host_port_);
  if (!ca_file_.empty()) cli.set_ca_cert_path(ca_file_.c_str());
  cli.enable_server_certificate_verification(true);
  cli.set_tcp_nodelay(true);  // the request's header and body go out at once, not a delayed-ACK apart
  const time_t sec = time_t(timeout_s);
  const time_t usec = time_t((timeout_s - double(sec)) * 1e6);
  cli.set_connection_timeout(sec, usec);
  cli.set_read_timeout(sec, usec);
  cli.set_write_timeout(sec, usec);
  httplib::Headers h;
  for (const auto& [k, v] : headers) h.emplace(k, v);
  auto res = body ? cli.Post(prefix_ + path, h, *body, "application/json") : cli.Get(prefix_ + path, h);
  if (!res) {
    const httplib::Error e = res.error();
    r.kind = e == httplib::Error::Read || e == httplib::Error::Write || e == httplib::Error::ConnectionTimeout
                 ? (e == httplib::Error::ConnectionTimeout ? HttpResult::Kind::Timeout : HttpResult::Kind::ConnectionError)
                 : HttpResult::Kind::ConnectionError;
    // httplib reports a read timeout as a read error; classify by name for the message
    r.error = httplib::to_string(e);
    if (e == httplib::Error::SSLServerVerification)
      r.error += " (the server's certificate is not trusted: give its CA with --ca-file)";
    if (r.error.find("Timeout") != std::string::npos || r.error.find("timeout") != std::string::npos) r.kind = HttpResult::Kind::Timeout;
    return r;
  }
  r.status = res->status;
  r.body = res->body;
  for (const auto& [k, v] : res->headers) {
    std::string lk = k;
    std::transform(lk.begin(), lk.end(), lk.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    r.headers[lk] = v;
  }
  r.kind = r.status >= 200 && r.status < 300 ? HttpResult::Kind::Ok : HttpResult::Kind::HttpError;
  return r;
}

}  // namespace distill

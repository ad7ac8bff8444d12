// A stand-in for the API server, in the test process: it knows a few session
// tokens, and can be told to answer slowly or to go away.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "child_process.hpp"

namespace test {

class stub_auth_server {
 public:
  struct account {
    std::string user;
    std::vector<std::string> publish;
    std::vector<std::string> subscribe;
    int expires_in = 3600;
  };

  stub_auth_server() : port_(free_port()) {
    server_.Post("/v1/sessions/validate", [this](const httplib::Request& request, httplib::Response& response) {
      calls_++;
      if (delay_.load().count() > 0) std::this_thread::sleep_for(delay_.load());
      const auto body = nlohmann::json::parse(request.body, nullptr, false);
      std::lock_guard lock(mutex_);
      last_remote_addr_ = body.value("remote_addr", "");
      const auto found = body.is_object() ? sessions_.find(body.value("session", "")) : sessions_.end();
      // Like the real API server: a session lives expires_in seconds from
      // when it was added, and each answer says how much of that is left.
      const auto left = found == sessions_.end()
                            ? std::chrono::milliseconds(0)
                            : std::chrono::duration_cast<std::chrono::milliseconds>(expiry_.at(found->first) -
                                                                                    std::chrono::steady_clock::now());
      if (found == sessions_.end() || left.count() <= 0) {
        response.status = 401;
        response.set_content(R"({"error":"invalid_session"})", "application/json");
        return;
      }
      nlohmann::json answer{{"user", found->second.user},
                            {"acl", {{"publish", found->second.publish}, {"subscribe", found->second.subscribe}}},
                            {"expires_in", (left.count() + 999) / 1000}};
      response.set_content(answer.dump(), "application/json");
    });
    thread_ = std::thread([this] { server_.listen("127.0.0.1", port_); });
    if (!wait_for_port(port_)) throw std::runtime_error("stub auth server did not start");
  }
  ~stub_auth_server() { stop(); }

  void add(const std::string& token, account a) {
    std::lock_guard lock(mutex_);
    expiry_[token] = std::chrono::steady_clock::now() + std::chrono::seconds(a.expires_in);
    sessions_[token] = std::move(a);
  }
  void set_delay(std::chrono::milliseconds d) { delay_ = d; }
  void stop() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  unsigned short port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int calls() const { return calls_; }

 private:
  unsigned short port_;
  httplib::Server server_;
  std::thread thread_;
  std::mutex mutex_;
  std::map<std::string, account> sessions_;
  std::map<std::string, std::chrono::steady_clock::time_point> expiry_;
  std::atomic<std::chrono::milliseconds> delay_{std::chrono::milliseconds(0)};
  std::atomic<int> calls_{0};
  std::string last_remote_addr_;
};

}  // namespace test

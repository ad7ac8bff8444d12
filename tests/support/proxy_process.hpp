// The real mqtt-proxy binary, started on free loopback ports.
#pragma once

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>

#include "child_process.hpp"

#ifndef MQTT_PROXY_BINARY
#error "MQTT_PROXY_BINARY must name the mqtt-proxy executable"
#endif

namespace test {

class proxy_process {
 public:
  proxy_process(unsigned short broker_port, const std::string& auth_url, std::vector<std::string> extra = {})
      : port_(free_port()), admin_port_(free_port()), dir_(temp_dir("mqtt-proxy")) {
    std::vector<std::string> args{"--listen",     "127.0.0.1:" + std::to_string(port_),
                                  "--upstream",   "127.0.0.1:" + std::to_string(broker_port),
                                  "--upstream-username", "proxy",
                                  "--upstream-password", "proxy-secret",
                                  "--auth-url",   auth_url,
                                  "--admin",      "127.0.0.1:" + std::to_string(admin_port_),
                                  "--threads",    "2",
                                  "--log-level",  "debug"};
    args.insert(args.end(), extra.begin(), extra.end());
    // MQTT_PROXY_BINARY in the environment: another build (run.sh's ASan+UBSan one).
    const char* binary = std::getenv("MQTT_PROXY_BINARY");
    process_.emplace(binary && *binary ? binary : MQTT_PROXY_BINARY, args, log_file().string());
    if (!wait_for_port(port_)) throw std::runtime_error("mqtt-proxy did not start; see " + log_file().string());
  }

  unsigned short port() const { return port_; }
  unsigned short admin_port() const { return admin_port_; }
  std::filesystem::path log_file() const { return dir_ / "proxy.log"; }
  std::string log() const {
    std::ifstream in(log_file());
    return {std::istreambuf_iterator<char>(in), {}};
  }
  bool running() { return process_->running(); }
  // Resident memory of the proxy process, in KiB.
  long rss_kib() const {
    std::ifstream status("/proc/" + std::to_string(process_->pid()) + "/status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
  }

 private:
  unsigned short port_;
  unsigned short admin_port_;
  std::filesystem::path dir_;
  std::optional<child_process> process_;
};

}  // namespace test

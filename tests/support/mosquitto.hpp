// A real Mosquitto 2.0 on a free loopback port, for as long as the object lives.
#pragma once

#include <fstream>
#include <optional>

#include "child_process.hpp"

namespace test {

class mosquitto_broker {
 public:
  struct options {
    // With a user, anonymous clients are refused and only this account may connect.
    std::optional<std::pair<std::string, std::string>> account;
  };

  explicit mosquitto_broker(options opts = {}) : port_(free_port()), dir_(temp_dir("mosquitto")) {
    std::ofstream conf(dir_ / "mosquitto.conf");
    conf << "listener " << port_ << " 127.0.0.1\n"
         << "persistence false\n"
         << "log_dest stderr\n"
         << "log_type error\nlog_type warning\nlog_type notice\n";
    if (opts.account) {
      const auto password_file = (dir_ / "passwd").string();
      std::ofstream(password_file) << opts.account->first << ":" << opts.account->second << "\n";
      // mosquitto_passwd -U hashes the plain-text file in place.
      child_process hash("mosquitto_passwd", {"-U", password_file});
      for (int i = 0; i < 200 && hash.running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      conf << "allow_anonymous false\npassword_file " << password_file << "\n";
    } else {
      conf << "allow_anonymous true\n";
    }
    conf.close();
    process_.emplace(mosquitto_path(), std::vector<std::string>{"-c", (dir_ / "mosquitto.conf").string()},
                     (dir_ / "mosquitto.log").string());
    if (!wait_for_port(port_)) throw std::runtime_error("mosquitto did not start; see " + (dir_ / "mosquitto.log").string());
  }

  unsigned short port() const { return port_; }
  std::filesystem::path log_file() const { return dir_ / "mosquitto.log"; }

 private:
  static std::string mosquitto_path() {
    for (const char* candidate : {"/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"})
      if (std::filesystem::exists(candidate)) return candidate;
    return "mosquitto";
  }

  unsigned short port_;
  std::filesystem::path dir_;
  std::optional<child_process> process_;
};

}  // namespace test

// net/broker_probe against a real Mosquitto configured with limits: the probe
// learns what the broker states in its CONNACK, and a refusal or an absent
// broker is an error, not an exception.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <optional>

#include "../support/child_process.hpp"
#include "net/broker_probe.hpp"

namespace {

struct limited_mosquitto {
  unsigned short port = test::free_port();
  std::filesystem::path dir = test::temp_dir("probe-mosquitto");
  std::optional<test::child_process> process;

  limited_mosquitto() {
    const auto passwd = (dir / "passwd").string();
    std::ofstream(passwd) << "proxy:proxy-secret\n";
    test::child_process hash("mosquitto_passwd", {"-U", passwd});
    for (int i = 0; i < 200 && hash.running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ofstream conf(dir / "mosquitto.conf");
    conf << "listener " << port << " 127.0.0.1\npersistence false\nallow_anonymous false\npassword_file " << passwd
         << "\nmax_keepalive 10\nmax_qos 1\nretain_available false\nmax_packet_size 4096\nmax_inflight_messages 10\n";
    conf.close();
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                                          std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                                          std::filesystem::perms::others_exec);
    process.emplace("mosquitto", std::vector<std::string>{"-c", (dir / "mosquitto.conf").string()},
                    (dir / "mosquitto.log").string());
    REQUIRE(test::wait_for_port(port));
  }
  ~limited_mosquitto() {
    process.reset();
    std::filesystem::remove_all(dir);
  }

  proxy::upstream_settings where() const {
    proxy::upstream_settings w;
    w.host = "127.0.0.1";
    w.port = std::to_string(port);
    return w;
  }
};

}  // namespace

TEST_CASE("the probe learns Mosquitto's limits from its CONNACK") {
  limited_mosquitto broker;
  auto result = proxy::probe_broker(broker.where(), std::string("proxy"), std::string("proxy-secret"), nullptr,
                                    std::chrono::seconds(5));
  REQUIRE_MESSAGE(result.ok, result.error);
  CHECK(result.limits.server_keep_alive == 10);  // it asked for 65535
  CHECK(result.limits.maximum_qos == mqtt::qos::at_least_once);
  CHECK(result.limits.retain_available == false);
  CHECK(result.limits.maximum_packet_size == 4096u);
  CHECK(result.limits.receive_maximum == 10);
  // And it ended cleanly: the broker saw a DISCONNECT ("disconnected."), not a
  // dropped socket ("closed its connection." / "socket error").
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  broker.process->stop();  // flushes the broker's log
  std::ifstream log(broker.dir / "mosquitto.log");
  int endings = 0;
  for (std::string line; std::getline(log, line);) {
    if (line.find("Client mqtt-proxy-probe-") == std::string::npos) continue;
    ++endings;
    CHECK_MESSAGE(line.ends_with(" disconnected."), line);
  }
  CHECK(endings == 1);
}

TEST_CASE("a refused probe and an absent broker are errors") {
  limited_mosquitto broker;
  auto refused = proxy::probe_broker(broker.where(), std::string("proxy"), std::string("wrong"), nullptr,
                                     std::chrono::seconds(5));
  CHECK_FALSE(refused.ok);
  CHECK(refused.error.find("refused") != std::string::npos);
  auto where = broker.where();
  where.port = std::to_string(test::free_port());
  auto absent = proxy::probe_broker(where, std::nullopt, std::nullopt, nullptr, std::chrono::seconds(2));
  CHECK_FALSE(absent.ok);
  CHECK_FALSE(absent.error.empty());
}

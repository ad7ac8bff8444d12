// test-broker [--listen HOST:PORT] [--sys-interval SECONDS] [--username U --password P] [--log-level L]
#include <csignal>
#include <iostream>

#include <spdlog/spdlog.h>

#include "broker.hpp"

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:1883";
  broker::broker_options options;
  std::string level = "info";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << "test-broker [--listen HOST:PORT] [--sys-interval SECONDS] [--username U --password P]\n"
                   "            [--max-queued N] [--log-level LEVEL]\n"
                   "A small MQTT 3.1.1/5.0 broker for tests and the quick start (default 127.0.0.1:1883).\n";
      return 0;
    }
    if (i + 1 >= argc) {
      std::cerr << "test-broker: " << flag << " needs a value\n";
      return 2;
    }
    const std::string value = argv[++i];
    try {
      if (flag == "--listen") listen = value;
      else if (flag == "--sys-interval") options.sys_interval = std::chrono::seconds(std::stoul(value));
      else if (flag == "--username") options.username = value;
      else if (flag == "--password") options.password = value;
      else if (flag == "--max-queued") options.max_queued_messages = std::stoul(value);
      else if (flag == "--log-level") level = value;
      else {
        std::cerr << "test-broker: unknown flag " << flag << "\n";
        return 2;
      }
    } catch (const std::exception&) {
      std::cerr << "test-broker: " << flag << " needs a number\n";
      return 2;
    }
  }
  if (options.sys_interval.count() == 0) options.sys_interval = std::chrono::seconds(10);
  if (options.username.has_value() != options.password.has_value()) {
    std::cerr << "test-broker: --username and --password go together\n";
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(level));
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "test-broker: --listen expects HOST:PORT\n";
    return 2;
  }
  boost::asio::io_context io(1);
  broker::broker b(io, options);
  try {
    b.listen({boost::asio::ip::make_address(listen.substr(0, colon)),
              static_cast<unsigned short>(std::stoul(listen.substr(colon + 1)))});
  } catch (const std::exception& e) {
    std::cerr << "test-broker: cannot listen on " << listen << ": " << e.what() << "\n";
    return 1;
  }
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) { io.stop(); });
  spdlog::info("test-broker listening on {}", listen);
  io.run();
  return 0;
}

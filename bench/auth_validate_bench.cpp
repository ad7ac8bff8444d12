// Validations per second against a running auth-server (not a test: run it by
// hand, see bench/run.sh). Each thread keeps one HTTP/1.1 keep-alive
// connection, as the proxy's pool does.
//   auth_validate_bench HOST PORT SESSION THREADS SECONDS
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 6) {
    std::cerr << "usage: auth_validate_bench HOST PORT SESSION THREADS SECONDS\n";
    return 2;
  }
  const std::string host = argv[1];
  const int port = std::stoi(argv[2]);
  const std::string body = std::string(R"({"session":")") + argv[3] + "\"}";
  const int threads = std::stoi(argv[4]);
  const auto duration = std::chrono::seconds(std::stoi(argv[5]));
  std::atomic<long> ok{0}, failed{0};
  const auto deadline = std::chrono::steady_clock::now() + duration;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      httplib::Client client(host, port);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);  // as the proxy's client does
      while (std::chrono::steady_clock::now() < deadline) {
        auto r = client.Post("/v1/sessions/validate", body, "application/json");
        (r && r->status == 200 ? ok : failed)++;
      }
    });
  }
  for (auto& w : workers) w.join();
  std::cout << "threads=" << threads << " seconds=" << duration.count() << " ok=" << ok << " failed=" << failed
            << " validations_per_second=" << ok / duration.count() << "\n";
  return failed == 0 ? 0 : 1;
}

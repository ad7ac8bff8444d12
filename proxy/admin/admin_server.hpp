// The admin listener for load balancers and monitoring:
//   GET /healthz  200 while the process runs
//   GET /readyz   200 when listening and both the broker (with several broker
//                 nodes: at least one of them) and the API server accept TCP
//                 connections; 503 while draining or otherwise
//   GET /metrics  Prometheus text format
#pragma once

#include <atomic>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "admin/metrics.hpp"
#include "admin/operator_api.hpp"
#include "net/upstream_pool.hpp"

namespace proxy {

struct readiness_targets {
  std::string upstream_host, upstream_port;
  std::string auth_host, auth_port;
  // Several brokers (a cluster): ready while at least one of them accepts.
  std::vector<upstream_node> upstream_nodes;
};

class admin_server {
 public:
  admin_server(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint, const metrics& counters,
               readiness_targets targets, const std::atomic<bool>& draining);
  void start();
  void stop();
  // The operator endpoints (/v1/...), served before the GET-only routes; null: none.
  void set_operator_api(operator_api* api) { operator_ = api; }

 private:
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket socket);
  boost::asio::awaitable<bool> reachable(const std::string& host, const std::string& port);
  boost::asio::awaitable<bool> any_upstream_reachable();

  boost::asio::ip::tcp::acceptor acceptor_;
  const metrics& metrics_;
  readiness_targets targets_;
  const std::atomic<bool>& draining_;
  operator_api* operator_ = nullptr;
};

}  // namespace proxy

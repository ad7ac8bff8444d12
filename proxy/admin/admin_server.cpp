#include "admin/admin_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

admin_server::admin_server(asio::io_context& io, const tcp::endpoint& endpoint, const metrics& counters,
                           readiness_targets targets, const std::atomic<bool>& draining)
    : acceptor_(io, endpoint), metrics_(counters), targets_(std::move(targets)), draining_(draining) {}

void admin_server::start() { asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached); }

void admin_server::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

asio::awaitable<void> admin_server::accept_loop() {
  while (acceptor_.is_open()) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      // Out of descriptors (EMFILE) passes: the admin port must outlive it, not end with it (issue 14). The
      // pending scrape waits in the backlog meanwhile.
      asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    asio::co_spawn(acceptor_.get_executor(), serve(std::move(socket)), asio::detached);
  }
}

asio::awaitable<bool> admin_server::reachable(const std::string& host, const std::string& port) {
  using namespace asio::experimental::awaitable_operators;
  try {
    asio::steady_timer deadline(acceptor_.get_executor(), std::chrono::seconds(1));
    tcp::resolver resolver(acceptor_.get_executor());
    auto endpoints = co_await resolver.async_resolve(host, port, asio::use_awaitable);
    tcp::socket probe(acceptor_.get_executor());
    // as_tuple: a refused connect ends the race at once. `||` waits for the
    // first *success*, so a thrown refusal would wait out the deadline, and a
    // node that is down would make every /readyz of a cluster take 1 s
    // (longer than HAProxy's check timeout).
    auto result = co_await (asio::async_connect(probe, endpoints, asio::as_tuple(asio::use_awaitable)) ||
                            deadline.async_wait(asio::use_awaitable));
    if (result.index() != 0) co_return false;
    const auto [connect_error, endpoint] = std::get<0>(result);
    co_return !connect_error;
  } catch (const boost::system::system_error&) {
    co_return false;
  }
}

// One node taking connections is enough: the proxy dials the others only
// when it must (net/upstream_pool.hpp). Tried in order, the first yes ends it.
asio::awaitable<bool> admin_server::any_upstream_reachable() {
  if (targets_.upstream_nodes.empty()) {
    const bool up = co_await reachable(targets_.upstream_host, targets_.upstream_port);
    co_return up;
  }
  bool any = false;
  for (std::size_t i = 0; i < targets_.upstream_nodes.size() && !any; ++i) {
    const bool up = co_await reachable(targets_.upstream_nodes[i].host, targets_.upstream_nodes[i].port);
    any = up;
  }
  co_return any;
}

asio::awaitable<void> admin_server::serve(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    stream.expires_after(std::chrono::seconds(10));
    http::request<http::empty_body> request;
    auto [ec, n] = co_await http::async_read(stream, buffer, request, asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    if (operator_ && operator_api::handles(request.target())) {
      auto answer = co_await operator_->serve(request);
      answer.keep_alive(request.keep_alive());
      answer.prepare_payload();
      auto [answer_ec, answer_written] = co_await http::async_write(stream, answer, asio::as_tuple(asio::use_awaitable));
      if (answer_ec || !answer.keep_alive()) co_return;
      continue;
    }
    http::response<http::string_body> response{http::status::ok, request.version()};
    response.set(http::field::content_type, "text/plain; charset=utf-8");
    const auto target = request.target();
    if (request.method() != http::verb::get) {
      response.result(http::status::method_not_allowed);
      response.body() = "GET only\n";
    } else if (target == "/healthz") {
      response.body() = "ok\n";
    } else if (target == "/readyz") {
      std::string problems;
      if (draining_.load()) problems += "draining\n";
      // Each co_await stands alone: GCC 12 miscompiles co_await inside conditions.
      const bool broker_up = co_await any_upstream_reachable();
      const bool api_up = co_await reachable(targets_.auth_host, targets_.auth_port);
      if (!broker_up) problems += "broker unreachable\n";
      if (!api_up) problems += "API server unreachable\n";
      response.result(problems.empty() ? http::status::ok : http::status::service_unavailable);
      response.body() = problems.empty() ? "ready\n" : problems;
    } else if (target == "/metrics") {
      response.set(http::field::content_type, "text/plain; version=0.0.4");
      response.body() = metrics_.render();
    } else {
      response.result(http::status::not_found);
      response.body() = "not found\n";
    }
    response.keep_alive(request.keep_alive());
    response.prepare_payload();
    auto [write_ec, written] = co_await http::async_write(stream, response, asio::as_tuple(asio::use_awaitable));
    if (write_ec || !response.keep_alive()) co_return;
  }
}

}  // namespace proxy

// Dialling one of several brokers (net/upstream_pool.hpp): the pool plans the
// order, dial_upstream() dials one node, and a node that refuses, does not
// accept, or accepts but never answers the CONNECT hands the client to the
// next one, all within the one upstream connect timeout. A client already connected to a node that dies is not
// moved: its connection ends as with one broker (5.0: DISCONNECT 0x89) and it
// reconnects, through the load balancer, to a node that is up.
#include <array>

#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include "net/client_connection.hpp"

namespace proxy {

namespace asio = boost::asio;
namespace {

// Each node gets an even share of what is left of the budget, so one node
// that black-holes SYNs cannot use it all; but at least a second (or all
// that is left), so a loaded broker is not given up on too eagerly.
std::chrono::milliseconds attempt_timeout(std::chrono::milliseconds left, std::size_t nodes_left) {
  const auto share = left / static_cast<long>(std::max<std::size_t>(nodes_left, 1));
  return std::max(share, std::min(left, std::chrono::milliseconds(1'000)));
}

}  // namespace

asio::awaitable<std::string> client_connection::dial_with_failover(const mqtt::bytes* connect_packet) {
  if (!environment_.upstream_nodes) {
    std::string failure = co_await dial_upstream();
    co_return failure;
  }
  using clock = std::chrono::steady_clock;
  const auto started = clock::now();
  const auto budget = settings().upstream.connect_timeout;
  const auto order = environment_.upstream_nodes->plan(started);
  std::string failures;
  for (std::size_t k = 0; k < order.size() && state_ == lifecycle::running; ++k) {
    const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - started);
    if (spent >= budget) break;
    const auto& node = environment_.upstream_nodes->node(order[k]);
    upstream_settings target = settings().upstream;  // TLS settings; the node's own host for its certificate
    target.host = node.host;
    target.port = node.port;
    target.connect_timeout = attempt_timeout(budget - spent, order.size() - k);
    const auto attempt_ends = clock::now() + target.connect_timeout;
    dial_target_ = &target;
    dial_failure_.clear();
    dial_local_error_ = false;
    std::string failure = co_await dial_upstream();
    if (failure.empty() && connect_packet && state_ == lifecycle::running) {
      std::string unanswered = co_await greet_node(*connect_packet, attempt_ends);
      failure = std::move(unanswered);
    }
    dial_target_ = &settings().upstream;
    if (failure.empty()) {
      environment_.upstream_nodes->report_success(order[k]);
      co_return failure;
    }
    if (state_ != lifecycle::running) co_return failure;  // closing while dialling
    if (!dial_local_error_) environment_.upstream_nodes->report_failure(order[k], clock::now());
    if (k + 1 < order.size()) spdlog::info("upstream {} unreachable: {}; trying the next node", node.name(), failure);
    failures += (failures.empty() ? "" : "; ") + node.name() + ": " + failure;
  }
  if (failures.empty()) failures = "no node within " + std::to_string(budget.count()) + " ms";
  co_return "every node failed: " + failures;
}

// A node that takes the TCP connection but never answers the CONNECT (a
// broker still starting, a hung MQTT listener, a port forwarded to nothing)
// would get every client the round robin sends it, each refused only at the
// session's handshake deadline. So with several nodes a node is up once it
// has answered: the CONNECT goes out here, and the first bytes back (the
// CONNACK, or whatever the session will make of them) wait in the framer.
// A CONNACK that says the node cannot serve now (answer_rules_out_node) is
// not an answer for the client: the next node is tried.
asio::awaitable<std::string> client_connection::greet_node(const mqtt::bytes& connect_packet,
                                                          std::chrono::steady_clock::time_point answer_by) {
  arm(deadline::upstream_dial, answer_by);
  // The answer is read through the event loop: the first wait after it must
  // re-arm, whatever the dial said (a persistent session's queued messages
  // may follow the CONNACK beyond this read).
  upstream_never_polled_ = false;
  greeting_node_ = true;
  const std::vector<asio::const_buffer> greeting{asio::buffer(connect_packet)};
  const io_result written = co_await upstream_->write(greeting);
  std::string failure;
  if (written.error) failure = "CONNECT not sent: " + written.error.message();
  if (failure.empty() && !dial_failure_.empty()) failure = "deadline";  // the CONNECT went, the time is up
  if (failure.empty()) {
    auto space = upstream_framer_.prepare(512);
    const io_result answer = co_await upstream_->read_some(asio::buffer(space.data(), space.size()));
    if (answer.error == asio::error::eof) failure = "closed the connection before its CONNACK";
    else if (answer.error) failure = answer.error.message();
    else upstream_framer_.commit(answer.bytes);
  }
  greeting_node_ = false;
  disarm(deadline::upstream_dial);
  const bool unanswered = !failure.empty() && !dial_failure_.empty();
  if (unanswered) {
    failure = "connected, but no answer to CONNECT within " + std::to_string(dial_target_->connect_timeout.count()) + " ms";
    if (!written.error) co_await leave_node_without_will();
  } else if (failure.empty() && answer_rules_out_node(upstream_framer_.pending(), session_.upstream_version())) {
    failure = "answered the CONNECT with server unavailable or busy";
    upstream_framer_.clear();
  }
  co_return failure;
}

// The node given up on has the client's CONNECT, will included, and may yet
// act on it: were the connection then to end without DISCONNECT, it would
// publish the will of a client that is alive on another node. So it gets a
// DISCONNECT (normal disconnection: will discarded) and a FIN, within a short
// bound; then the next dial closes it.
asio::awaitable<void> client_connection::leave_node_without_will() {
  const auto disconnect = *mqtt::encode(mqtt::disconnect{}, session_.upstream_version());
  arm_after(deadline::upstream_dial, std::chrono::milliseconds(200));
  const std::vector<asio::const_buffer> farewell{asio::buffer(disconnect)};
  const io_result written = co_await upstream_->write(farewell);
  if (!written.error) {
    boost::system::error_code ignored;
    if (upstream_->immediate_io()) upstream_->socket().shutdown(tcp_socket::shutdown_send, ignored);
    co_await drain_left_node();
  }
  disarm(deadline::upstream_dial);
}

// Closed with bytes unread (the node's late CONNACK, say), the socket would
// send RST instead of FIN, and a broker that reads the RST before the
// DISCONNECT may take the connection as lost and publish the will. So what
// the node sends is read and dropped until it closes its side, or until the
// deadline armed by leave_node_without_will closes the socket. The buffer is
// small and fixed: a node that talks on costs time (bounded), not memory.
asio::awaitable<void> client_connection::drain_left_node() {
  std::array<std::uint8_t, 256> discarded;
  for (;;) {
    const io_result read = co_await upstream_->read_some(asio::buffer(discarded));
    if (read.error) break;  // eof, or the deadline closed the socket
  }
}

}  // namespace proxy

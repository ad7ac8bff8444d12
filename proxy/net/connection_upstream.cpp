// Dialling the broker: resolve, connect and (for a TLS broker) handshake,
// all within the upstream connect timeout (the upstream_dial deadline closes
// the socket and cancels the resolver). Errors are error codes reported as
// themselves: out of file descriptors is EMFILE, not a timeout.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include "net/client_connection.hpp"
#include "net/tls_context.hpp"

namespace proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
namespace {
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);
}  // namespace

asio::awaitable<void> client_connection::connect_upstream(self_ptr self, mqtt::bytes connect_packet) {
  enqueue(side::upstream, std::move(connect_packet));
  const std::string failure = co_await self->dial_upstream();
  if (state_ != lifecycle::running) co_return;  // closing while dialling: nothing left to report
  if (!failure.empty()) {
    upstream_link_ = link::none;
    const auto& where = settings_.upstream;
    spdlog::warn("upstream {}:{} unreachable: {}", where.host, where.port, failure);
    apply(session_.on_upstream_connect_failed(failure));
    co_return;
  }
  upstream_link_ = link::open;
  start_writer(side::upstream);
  co_await read_upstream(self);
}

asio::awaitable<std::string> client_connection::dial_upstream() {
  const auto& where = settings_.upstream;
  upstream_ = make_upstream_transport(executor_, where, upstream_tls_ ? upstream_tls_->current() : nullptr);
  arm_after(deadline::upstream_dial, where.connect_timeout);
  resolver_.emplace(executor_);
  std::string failure;
  auto [resolve_error, endpoints] = co_await resolver_->async_resolve(where.host, where.port, as_tuple_awaitable);
  if (resolve_error) failure = "cannot resolve " + where.host + ": " + resolve_error.message();
  if (failure.empty() && state_ == lifecycle::running) {
    auto [connect_error, endpoint] = co_await asio::async_connect(upstream_->socket(), endpoints, as_tuple_awaitable);
    if (connect_error) failure = connect_error.message();
  }
  if (failure.empty() && state_ == lifecycle::running) {
    boost::system::error_code ignored;
    upstream_->socket().set_option(tcp::no_delay(true), ignored);
    const auto result = co_await upstream_->handshake();
    if (result.error) failure = result.detail.empty() ? result.error.message() : result.detail;
  }
  disarm(deadline::upstream_dial);
  resolver_.reset();
  // The deadline cut the dial short: that, not the aborted operation, is the cause.
  if (!failure.empty() && !dial_failure_.empty()) failure = dial_failure_;
  co_return failure;
}

void client_connection::upstream_dial_expired() {
  if (upstream_link_ != link::dialing) return;
  dial_failure_ = "no connection within " + std::to_string(settings_.upstream.connect_timeout.count()) + " ms";
  if (resolver_) resolver_->cancel();
  if (upstream_) upstream_->close();
}

}  // namespace proxy

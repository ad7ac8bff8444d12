// Closing: flush what is queued in both directions (closing), then end our
// side of both streams, log the connection's line and release the gauge
// (closed). Peers that do not take our bytes are cut at the flush deadline;
// peers that never close their side at the linger deadline.
#include <boost/asio/co_spawn.hpp>
#include <spdlog/spdlog.h>

#include "net/client_connection.hpp"
#include "net/log_field.hpp"

namespace proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
namespace {
constexpr auto linger_period = std::chrono::seconds(2);
}  // namespace

void client_connection::begin_close(std::string reason) {
  if (state_ >= lifecycle::closing) return;
  close_reason_ = std::move(reason);
  enter(lifecycle::closing);
  finish_if_flushed();
}

void client_connection::on_closing() {
  for (auto kind : {deadline::handshake, deadline::session_expiry, deadline::revalidate, deadline::upstream_ping,
                    deadline::keep_alive, deadline::transport_handshake})
    disarm(kind);
  pending_validation_.reset();  // withdraws a validation nobody waits for any more
  if (upstream_link_ == link::dialing) {
    dial_failure_ = "closing";
    if (resolver_) resolver_->cancel();
    if (upstream_) upstream_->close();
  }
  arm_after(deadline::flush, settings().drain_timeout);
  wake_readers();
  release_client_writes();  // a held CONNACK goes before whatever ends the session (last: it may finish closing)
}

void client_connection::finish_if_flushed() {
  if (state_ != lifecycle::closing) return;
  if (to_client_.writing || (upstream_link_ == link::open && to_upstream_.writing)) return;
  enter(lifecycle::closed);
}

// Our direction ends after everything queued (FIN, close_notify or a close
// frame); no DISCONNECT goes upstream unless the session queued one, so the
// broker decides on the will as it should. A writer cut off by the flush
// deadline leaves nothing to be polite about.
void client_connection::on_closed() {
  disarm(deadline::flush);
  auto self = shared_from_this();
  // A plain-TCP client that sent DISCONNECT closes its side itself: a FIN
  // now and a read for its FIN would be two syscalls per session for nothing
  // (issue 14). Everything queued for it went out (closing flushed), and
  // close() sends that and our FIN in order; only bytes the client sent
  // after its DISCONNECT, which it must not [MQTT-3.14.4-1], would make the
  // kernel answer them with an RST.
  if (forced_ || (client_left_ && client_->immediate_io())) {
    client_->close();
  } else if (client_established_ && !client_->immediate_io()) {
    spawn(end_stream(self, *client_));  // close_notify, a close frame
  } else {
    // Plain TCP (or no handshake done) ends with a FIN, at once: no coroutine for it (issue 14).
    boost::system::error_code ignored;
    client_->socket().shutdown(tcp_socket::shutdown_send, ignored);
  }
  if (upstream_ && upstream_link_ == link::open && !forced_) {
    if (ends_upstream_itself()) {
      // The broker closes after the DISCONNECT; its EOF ends the reader.
    } else if (upstream_->immediate_io()) {
      boost::system::error_code ignored;
      upstream_->socket().shutdown(tcp_socket::shutdown_send, ignored);
    } else {
      spawn(end_stream(self, *upstream_));
    }
  } else if (upstream_) {
    upstream_->close();
  }
  // A writer still in flight owns its buffers until it completes.
  if (!to_client_.writing) to_client_.clear();
  if (!to_upstream_.writing) to_upstream_.clear();
  gauge_.release();
  log_closed();
  arm_after(deadline::linger, linger_period);
  wake_readers();
}

void client_connection::note_to_upstream(std::uint8_t first_byte) {
  disconnect_to_upstream_ = (first_byte >> 4) == 14;  // DISCONNECT
}

// After a DISCONNECT the broker closes the connection itself ([MQTT-3.14.4]:
// the server closes it if the client has not): our FIN would cross its own,
// a shutdown() per session for nothing (issue 14). The upstream reader reads
// to its EOF and the socket closes then; a broker that keeps it open is
// closed at the linger deadline. Plain TCP only: a TLS broker still gets its
// close_notify.
bool client_connection::ends_upstream_itself() const {
  return disconnect_to_upstream_ && upstream_->immediate_io();
}

// The broker closed first (after our DISCONNECT, or on its own) and we have
// nothing more for it: our close ends the connection with an RST instead of
// a FIN. The broker's socket, in FIN_WAIT2, is then freed at once instead of
// going to TIME_WAIT for 60 s: one packet and one timewait socket fewer per
// session (issue 14), and a broker host that does not fill its TIME_WAIT
// table (tcp_max_tw_buckets) under churn. Nothing is lost: the broker read
// all it wanted (it closed), and we read it to its EOF. Plain TCP only, and
// only once our last write is done: a TLS broker gets its close_notify.
void client_connection::reset_on_close_after_broker_left() {
  if (state_ != lifecycle::closed || to_upstream_.writing || !upstream_->immediate_io()) return;
  boost::system::error_code ignored;
  upstream_->socket().set_option(tcp_socket::linger(true, 0), ignored);
  upstream_->close();  // now: asio's destructor would set the linger back, to close in the background
}

void client_connection::log_closed() {
  // Its fields are escaped strings, built before spdlog looks at the level.
  if (!spdlog::should_log(spdlog::level::info)) return;
  spdlog::info("connection closed remote={} client_id={} user={} reason=\"{}\"", remote_address_,
               session_.client_id().empty() ? "-" : log_field(session_.client_id()),
               session_.user().empty() ? "-" : log_field(session_.user()), log_field(close_reason_.str(), true));
}

void client_connection::close_sockets() {
  disarm_all();
  client_->close();
  if (upstream_) upstream_->close();
}

asio::awaitable<void> client_connection::end_stream(self_ptr self, transport& stream) {
  (void)self;  // keeps the connection alive until the stream is ended
  co_await stream.shutdown();
}

}  // namespace proxy

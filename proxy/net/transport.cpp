#include "net/transport.hpp"

#include "net/tcp_transport.hpp"
#include "net/tls_transport.hpp"
#include "net/websocket_transport.hpp"

namespace proxy {

using boost::asio::ip::tcp;

std::unique_ptr<transport> make_client_transport(tcp_socket socket, const listener_settings& listener,
                                                 ssl_context_ptr tls) {
  switch (listener.kind) {
    case transport_kind::tcp:
      return std::make_unique<tcp_transport>(std::move(socket));
    case transport_kind::tls:
      return std::make_unique<tls_transport>(std::move(socket), std::move(tls), tls_stream::role::server);
    case transport_kind::ws:
      return std::make_unique<websocket_transport<tcp_socket>>(std::move(socket), listener.websocket, nullptr);
    case transport_kind::wss:
      return std::make_unique<websocket_transport<tls_stream>>(
          std::move(socket), listener.websocket, std::move(tls));
  }
  return nullptr;
}

std::unique_ptr<transport> make_upstream_transport(const boost::asio::io_context::executor_type& executor,
                                                   const upstream_settings& upstream, ssl_context_ptr tls) {
  tcp_socket socket(executor);
  if (!tls) return std::make_unique<tcp_transport>(std::move(socket));
  return std::make_unique<tls_transport>(std::move(socket), std::move(tls), tls_stream::role::client,
                                         upstream.server_name.empty() ? upstream.host : upstream.server_name);
}

}  // namespace proxy

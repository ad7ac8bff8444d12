// Settings every connection reads and the objects it shares: immutable after
// start-up except the counters, which are atomics.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "admin/metrics.hpp"
#include "net/upstream_pool.hpp"
#include "session/client_session.hpp"

namespace proxy {

// How a client's bytes arrive: the same MQTT session runs over all four.
enum class transport_kind { tcp, tls, ws, wss };

inline const char* to_string(transport_kind kind) {
  switch (kind) {
    case transport_kind::tcp: return "tcp";
    case transport_kind::tls: return "tls";
    case transport_kind::ws: return "ws";
    case transport_kind::wss: return "wss";
  }
  return "?";
}

inline bool uses_tls(transport_kind kind) { return kind == transport_kind::tls || kind == transport_kind::wss; }
inline bool uses_websocket(transport_kind kind) { return kind == transport_kind::ws || kind == transport_kind::wss; }

// PEM files of one TLS endpoint. They are read at start-up and again on SIGHUP.
struct tls_files {
  std::string cert_file;       // certificate chain, leaf first
  std::string key_file;        // unencrypted private key
  std::string client_ca_file;  // set: clients must present a certificate issued by this CA (mTLS)
};

struct websocket_options {
  std::string path = "/mqtt";
  // Browsers send Origin; when this list is not empty a browser page from
  // another origin is refused (403). Clients that send no Origin (devices,
  // native apps) are not browsers and are let through.
  std::vector<std::string> allowed_origins;
};

// What one listener accepts; the connection reads it to set up its transport.
struct listener_settings {
  transport_kind kind = transport_kind::tcp;
  // Expect a PROXY protocol v1/v2 header from a load balancer before anything
  // else (also before TLS); its address is the one logged and sent to the API server.
  bool proxy_protocol = false;
  websocket_options websocket;
  // `[listeners.X] acl_mode`: over `[acl] mode` for this listener's connections.
  std::optional<acl_mode> acl_enforcement;
};

struct upstream_settings {
  std::string host = "127.0.0.1";
  std::string port = "1883";
  std::chrono::milliseconds connect_timeout{5'000};
  bool tls = false;
  std::string ca_file;      // empty: the system's trust store
  std::string cert_file;    // client certificate for brokers that require one
  std::string key_file;
  std::string server_name;  // checked against the broker's certificate; empty: host
  // Learn the broker's limits at start-up with one probe CONNECT
  // (net/broker_probe.hpp); `[upstream]` limit keys win over what it learns.
  bool probe = true;
  // Several brokers (a cluster): `[upstream] addresses`, `--upstream a,b,c`.
  // Empty: the one node host:port. When set, host/port are its first node.
  std::vector<upstream_node> nodes;
  upstream_backoff backoff;  // how long a node whose dial failed is skipped
  // Source addresses for the broker connections, round robin (net/upstream_source.hpp); empty: the kernel's choice.
  std::vector<boost::asio::ip::address> bind_addresses;
};

// The nodes to dial: `nodes`, or host:port as a one-element list.
inline std::vector<upstream_node> upstream_nodes(const upstream_settings& upstream) {
  if (!upstream.nodes.empty()) return upstream.nodes;
  return {upstream_node{upstream.host, upstream.port}};
}

struct connection_settings {
  session_config session;
  upstream_settings upstream;
  std::chrono::milliseconds connect_timeout{10'000};    // accept to CONNECT
  std::chrono::milliseconds handshake_timeout{10'000};  // accept to the end of the TLS / WebSocket handshake
  std::chrono::milliseconds drain_timeout{5'000};       // flushing queued bytes on close
  // The proxy's CONNACK to a client that sent its auth PUBLISH with the
  // CONNECT waits at most this long for the auth answer, to go out with it in
  // one write (net/client_connection.hpp, hold_client_writes); 0: never held.
  std::chrono::milliseconds connack_hold{50};
  std::size_t max_packet_size = 1024 * 1024;
  std::size_t max_connections = 100'000;
  // Descriptors the process holds besides its clients' (main.cpp: by workers,
  // listeners and API server connections); what the open-file limit must
  // also hold.
  std::size_t descriptor_reserve = 64;
  // Reading from one side stops while the other side has this much queued,
  // so a slow reader cannot make the proxy buffer without bound.
  std::size_t write_high_water = 1024 * 1024;
};

}  // namespace proxy

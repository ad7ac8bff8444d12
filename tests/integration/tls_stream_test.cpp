// tls_stream against itself over loopback TCP: OpenSSL on both ends, real
// sockets, small send buffers so that writes block midway while reads wait.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "net/tls_context.hpp"
#include "net/tls_stream.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using proxy::tls_stream;
namespace fs = std::filesystem;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

namespace {

struct certificates {
  fs::path dir = fs::temp_directory_path() / ("tls-stream-" + std::to_string(::getpid()));
  std::string cert = (dir / "cert.pem").string();
  std::string key = (dir / "key.pem").string();

  certificates() {
    fs::create_directories(dir);
    const std::string make = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
                             "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " + key +
                             " -out " + cert + " 2>/dev/null";
    REQUIRE(std::system(make.c_str()) == 0);
  }
  ~certificates() { fs::remove_all(dir); }
};

struct pair_of_streams {
  asio::io_context io;
  certificates files;
  std::unique_ptr<tls_stream> server;
  std::unique_ptr<tls_stream> client;

  explicit pair_of_streams(const std::string& expected_name = "localhost") {
    tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    proxy::tcp_socket client_socket(io);
    client_socket.connect(acceptor.local_endpoint());
    proxy::tcp_socket server_socket = acceptor.accept(io);
    // Small send buffers make writes block midway. (Not receive buffers: on
    // loopback, with a 64 KiB MSS, a receive buffer far below the MSS makes
    // Linux advertise a zero window for good, which stalls any program.)
    for (auto* s : {&client_socket, &server_socket}) s->set_option(asio::socket_base::send_buffer_size(4096));
    auto server_context = proxy::make_server_tls_context({files.cert, files.key, ""}, "test.");
    proxy::upstream_settings upstream;
    upstream.ca_file = files.cert;
    auto client_context = proxy::make_upstream_tls_context(upstream);
    server = std::make_unique<tls_stream>(std::move(server_socket), server_context);
    client = std::make_unique<tls_stream>(std::move(client_socket), client_context);
    client->expect_server_name(expected_name);
  }

  // Both handshakes; returns the client's and the server's results.
  std::pair<boost::system::error_code, boost::system::error_code> handshake() {
    boost::system::error_code client_result, server_result;
    client->async_handshake(tls_stream::role::client, [&](boost::system::error_code ec, std::size_t) { client_result = ec; });
    server->async_handshake(tls_stream::role::server, [&](boost::system::error_code ec, std::size_t) { server_result = ec; });
    io.run();
    io.restart();
    return {client_result, server_result};
  }
};

asio::awaitable<void> send_all(tls_stream& stream, const std::string& data, std::size_t chunk) {
  for (std::size_t at = 0; at < data.size(); at += chunk) {
    auto [ec, n] = co_await asio::async_write(stream, asio::buffer(data.data() + at, std::min(chunk, data.size() - at)),
                                              as_tuple_awaitable);
    REQUIRE_FALSE(ec);
  }
}

asio::awaitable<void> receive_all(tls_stream& stream, std::string& into, std::size_t expected, std::size_t chunk) {
  std::vector<char> buffer(chunk);
  while (into.size() < expected) {
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(buffer), as_tuple_awaitable);
    REQUIRE_FALSE(ec);
    into.append(buffer.data(), n);
  }
}

// Echoes until the peer's close_notify, then closes its own side.
asio::awaitable<void> echo(tls_stream& stream) {
  std::vector<char> buffer(1000);
  for (;;) {
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(buffer), as_tuple_awaitable);
    if (ec) {
      CHECK(ec == asio::error::eof);  // close_notify, not a truncation
      stream.shutdown_send();
      co_return;
    }
    auto [write_error, written] = co_await asio::async_write(stream, asio::buffer(buffer.data(), n), as_tuple_awaitable);
    REQUIRE_FALSE(write_error);
  }
}

// Reads `expected` bytes in odd-sized pieces, closes its side and waits for the peer's close_notify.
asio::awaitable<void> receive_then_close(tls_stream& stream, std::string& into, std::size_t expected, bool& saw_eof) {
  co_await receive_all(stream, into, expected, 777);
  stream.shutdown_send();
  char byte = 0;
  auto [ec, n] = co_await stream.async_read_some(asio::buffer(&byte, 1), as_tuple_awaitable);
  saw_eof = ec == asio::error::eof;
}

std::string random_bytes(std::size_t size) {
  std::mt19937 generator(42);
  std::string out(size, '\0');
  for (auto& c : out) c = static_cast<char>(generator());
  return out;
}

}  // namespace

TEST_SUITE("tls_stream") {
  TEST_CASE("handshake verifies the name; a wrong name fails on the client, with the reason") {
    pair_of_streams good;
    auto [client, server] = good.handshake();
    CHECK_FALSE(client);
    CHECK_FALSE(server);

    pair_of_streams wrong("broker.example");
    auto [client_error, server_error] = wrong.handshake();
    REQUIRE(client_error);
    CHECK(client_error.message().find("certificate verify failed") != std::string::npos);
    CHECK(server_error);  // the client's alert
  }

  TEST_CASE("the listener picks TLS_AES_128_GCM_SHA256 over the client's first AES-256, ChaCha20 for a client that leads with it") {
    // The contexts' Asio wrappers are gone by now (pair_of_streams drops
    // them): each SSL object holds its own SSL_CTX reference.
    pair_of_streams usual;  // OpenSSL's default client order starts with TLS_AES_256_GCM_SHA384
    auto [client_error, server_error] = usual.handshake();
    REQUIRE_FALSE(client_error);
    REQUIRE_FALSE(server_error);
    CHECK(std::string(SSL_get_cipher_name(usual.server->native_handle())) == "TLS_AES_128_GCM_SHA256");
    CHECK(std::string(SSL_get_cipher_name(usual.client->native_handle())) == "TLS_AES_128_GCM_SHA256");

    pair_of_streams chacha;
    REQUIRE(SSL_set_ciphersuites(chacha.client->native_handle(),
                                 "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256") == 1);
    auto [chacha_client_error, chacha_server_error] = chacha.handshake();
    REQUIRE_FALSE(chacha_client_error);
    REQUIRE_FALSE(chacha_server_error);
    CHECK(std::string(SSL_get_cipher_name(chacha.server->native_handle())) == "TLS_CHACHA20_POLY1305_SHA256");

    pair_of_streams only_256;  // a client that offers only AES-256 still connects
    REQUIRE(SSL_set_ciphersuites(only_256.client->native_handle(), "TLS_AES_256_GCM_SHA384") == 1);
    auto [only_client_error, only_server_error] = only_256.handshake();
    REQUIRE_FALSE(only_client_error);
    REQUIRE_FALSE(only_server_error);
    CHECK(std::string(SSL_get_cipher_name(only_256.server->native_handle())) == "TLS_AES_256_GCM_SHA384");
  }

  TEST_CASE("4 MiB echoed through small socket buffers, reading and writing at once on both ends") {
    pair_of_streams p;
    auto [client_error, server_error] = p.handshake();
    REQUIRE_FALSE(client_error);
    REQUIRE_FALSE(server_error);
    const std::string sent = random_bytes(4 * 1024 * 1024);
    std::string received;
    bool client_saw_eof = false;
    asio::co_spawn(p.io, echo(*p.server), asio::detached);
    asio::co_spawn(p.io, send_all(*p.client, sent, 64 * 1024), asio::detached);
    asio::co_spawn(p.io, receive_then_close(*p.client, received, sent.size(), client_saw_eof), asio::detached);
    p.io.run();
    CHECK(received.size() == sent.size());
    CHECK(received == sent);
    CHECK(client_saw_eof);  // the server's close_notify
  }

  TEST_CASE("a TCP close without close_notify is a truncation, not a clean end") {
    pair_of_streams p;
    auto [client_error, server_error] = p.handshake();
    REQUIRE_FALSE(client_error);
    REQUIRE_FALSE(server_error);
    boost::system::error_code read_error;
    char byte = 0;
    p.server->async_read_some(asio::buffer(&byte, 1),
                              [&](boost::system::error_code ec, std::size_t) { read_error = ec; });
    p.client->next_layer().shutdown(tcp::socket::shutdown_send);  // FIN, no close_notify
    p.io.run();
    CHECK(read_error == asio::ssl::error::stream_truncated);
  }
}

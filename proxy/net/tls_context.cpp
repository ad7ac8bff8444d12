#include "net/tls_context.hpp"

#include <openssl/ssl.h>

#include "config/config.hpp"

namespace proxy {

namespace ssl = boost::asio::ssl;

namespace {

constexpr const char* modern_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

void harden(ssl::context& context) {
  context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                      ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::no_compression);
  SSL_CTX_set_min_proto_version(context.native_handle(), TLS1_2_VERSION);
  SSL_CTX_set_cipher_list(context.native_handle(), modern_ciphers);  // TLS 1.3 suites are all modern
  // Renegotiation only costs the server CPU and complicates a stream that
  // reads and writes at once; TLS 1.3 has none anyway.
  SSL_CTX_set_options(context.native_handle(), SSL_OP_NO_RENEGOTIATION);
  // Idle connections give their record buffers back.
  SSL_CTX_set_mode(context.native_handle(), SSL_MODE_RELEASE_BUFFERS);
}

// A listener picks AES-128-GCM-SHA256 before AES-256-GCM-SHA384 (which
// OpenSSL clients list first), as Mozilla's "intermediate" orders them and as
// modern_ciphers already does for TLS 1.2: each idle TLS connection then keeps
// SHA-256 instead of SHA-384 state (issue 14: ~100-200 B less per idle
// client, measured in docs/benchmarks.md), and AES-128 is the faster of the
// two. A client that lists ChaCha20 first (no AES instructions) still gets it.
void prefer_small_suites(ssl::context& context) {
  SSL_CTX_set_ciphersuites(context.native_handle(),
                           "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384");
  SSL_CTX_set_options(context.native_handle(), SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
}

template <class Step>
void step(const std::string& key, const std::string& file, Step&& action) {
  try {
    action();
  } catch (const boost::system::system_error& e) {
    throw config_error(key, "cannot use " + file + ": " + e.code().message());
  }
}

}  // namespace

ssl_context_ptr make_server_tls_context(const tls_files& files, const std::string& key_prefix) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  harden(*context);
  prefer_small_suites(*context);
  if (files.cert_file.empty()) throw config_error(key_prefix + "cert_file", "required for a TLS listener");
  if (files.key_file.empty()) throw config_error(key_prefix + "key_file", "required for a TLS listener");
  step(key_prefix + "cert_file", files.cert_file, [&] { context->use_certificate_chain_file(files.cert_file); });
  step(key_prefix + "key_file", files.key_file, [&] { context->use_private_key_file(files.key_file, ssl::context::pem); });
  if (SSL_CTX_check_private_key(context->native_handle()) != 1)
    throw config_error(key_prefix + "key_file", files.key_file + " does not match the certificate in " + files.cert_file);
  if (!files.client_ca_file.empty()) {
    step(key_prefix + "client_ca_file", files.client_ca_file, [&] { context->load_verify_file(files.client_ca_file); });
    context->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    // Tell clients which issuers are accepted, and let verified sessions resume.
    SSL_CTX_set_client_CA_list(context->native_handle(), SSL_load_client_CA_file(files.client_ca_file.c_str()));
    static const unsigned char session_context[] = "mqtt-proxy";
    SSL_CTX_set_session_id_context(context->native_handle(), session_context, sizeof session_context - 1);
  }
  return context;
}

ssl_context_ptr make_upstream_tls_context(const upstream_settings& upstream) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
  harden(*context);
  if (upstream.ca_file.empty()) {
    context->set_default_verify_paths();
  } else {
    step("upstream.ca_file", upstream.ca_file, [&] { context->load_verify_file(upstream.ca_file); });
  }
  context->set_verify_mode(ssl::verify_peer);
  if (!upstream.cert_file.empty() || !upstream.key_file.empty()) {
    if (upstream.cert_file.empty() || upstream.key_file.empty())
      throw config_error("upstream.cert_file", "a client certificate needs both cert_file and key_file");
    step("upstream.cert_file", upstream.cert_file, [&] { context->use_certificate_chain_file(upstream.cert_file); });
    step("upstream.key_file", upstream.key_file, [&] { context->use_private_key_file(upstream.key_file, ssl::context::pem); });
  }
  return context;
}

}  // namespace proxy

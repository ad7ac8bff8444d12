#include "net/upstream_source.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstddef>

#include <boost/asio/error.hpp>

namespace proxy {

boost::system::error_code bind_upstream_source(tcp_socket& socket,
                                               const boost::asio::ip::tcp::endpoint& broker,
                                               const std::vector<boost::asio::ip::address>& sources) {
  if (sources.empty()) return {};
  // Shared by the workers; one relaxed increment per dial, not per packet.
  static std::atomic<std::size_t> next{0};
  const std::size_t start = next.fetch_add(1, std::memory_order_relaxed);
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const auto& source = sources[(start + i) % sources.size()];
    if (source.is_v4() != broker.address().is_v4()) continue;
#ifdef IP_BIND_ADDRESS_NO_PORT
    const int on = 1;
    ::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on);
#endif
    boost::system::error_code ec;
    socket.bind(boost::asio::ip::tcp::endpoint(source, 0), ec);
    return ec;
  }
  return boost::asio::error::address_family_not_supported;
}

}  // namespace proxy

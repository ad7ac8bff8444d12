// libFuzzer target for the PROXY protocol parser. Besides not crashing, the
// parser must be prefix-consistent, because the proxy reads the header with
// peek-then-consume across TCP segments: every proper prefix of a header it
// accepts must be "need more", never "invalid", and no input of the maximum
// size may still be "need more" (the reader would wait forever).
#include <cstdint>
#include <cstdlib>
#include <span>

#include "net/proxy_protocol.hpp"

namespace pp = proxy::proxy_protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  const auto whole = pp::parse(bytes);
  if (size >= pp::max_header_size && whole.state == pp::status::need_more) std::abort();
  if (whole.state != pp::status::complete) return 0;
  if (whole.value.size == 0 || whole.value.size > size || whole.value.size > pp::max_header_size) std::abort();
  const auto exact = pp::parse(bytes.first(whole.value.size));
  if (exact.state != pp::status::complete || exact.value.size != whole.value.size || exact.value.source != whole.value.source)
    std::abort();
  for (std::size_t k = 0; k < whole.value.size; ++k)
    if (pp::parse(bytes.first(k)).state != pp::status::need_more) std::abort();
  return 0;
}

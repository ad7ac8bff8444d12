// libFuzzer target for the WebSocket frame decoder. Besides not crashing, the
// decoder must not depend on how reads split the bytes: decoding the input in
// one piece and in two pieces (split at the first byte's value) must give the
// same message data, pings, close and failure.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "net/websocket_frames.hpp"

namespace wf = proxy::websocket_frames;

namespace {

struct outcome {
  std::string data;
  int pings = 0;
  bool close = false;
  std::uint16_t fail = 0;
  bool operator==(const outcome&) const = default;
};

void feed(wf::frame_decoder& decoder, std::vector<std::uint8_t> piece, outcome& out) {
  if (out.close || out.fail != 0) return;
  const auto found = decoder.decode(piece);
  if (found.data > piece.size()) std::abort();
  out.data.append(reinterpret_cast<const char*>(piece.data()), found.data);
  out.pings += found.ping ? 1 : 0;
  if (found.ping && decoder.take_ping().size() > wf::max_control_payload) std::abort();
  out.close = found.close;
  out.fail = found.fail;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::uint8_t> input(data, data + size);
  outcome whole, split;
  wf::frame_decoder one, two;
  feed(one, input, whole);
  const std::size_t cut = size == 0 ? 0 : data[0] % (size + 1);
  feed(two, {input.begin(), input.begin() + static_cast<std::ptrdiff_t>(cut)}, split);
  feed(two, {input.begin() + static_cast<std::ptrdiff_t>(cut), input.end()}, split);
  if (whole.data != split.data || whole.close != split.close || whole.fail != split.fail) std::abort();
  // One read reports several pings as one (only the latest is answered), so
  // only whether any ping arrived must agree.
  if ((whole.pings > 0) != (split.pings > 0)) std::abort();
  return 0;
}

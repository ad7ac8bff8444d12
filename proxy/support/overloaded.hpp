// The visitor idiom for std::visit: overloaded{[](const A&) {...}, [](const B&) {...}}.
#pragma once

namespace support {

template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};
// Spelled out for compilers without C++20 aggregate deduction (clang 14).
template <class... Ts>
overloaded(Ts...) -> overloaded<Ts...>;

}  // namespace support

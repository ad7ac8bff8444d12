// A string that is almost always empty (why a handshake or a dial failed,
// why the connection closed, a token while it is being validated): 8 B while
// it is, instead of std::string's 32, in every idle connection (issue 14).
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace proxy {

class rare_string {
 public:
  rare_string() = default;
  explicit rare_string(std::string text) { *this = std::move(text); }
  rare_string& operator=(std::string text) {
    if (text.empty()) {
      value_.reset();
    } else if (value_) {
      *value_ = std::move(text);
    } else {
      value_ = std::make_unique<std::string>(std::move(text));
    }
    return *this;
  }
  rare_string& operator=(const char* text) { return *this = std::string(text); }

  bool empty() const { return !value_ || value_->empty(); }
  void clear() { value_.reset(); }
  // The text, moved out; empty afterwards.
  std::string take() {
    std::string text = value_ ? std::move(*value_) : std::string();
    value_.reset();
    return text;
  }
  const std::string& str() const {
    static const std::string none;
    return value_ ? *value_ : none;
  }
  operator const std::string&() const { return str(); }  // NOLINT: used where a std::string was

 private:
  std::unique_ptr<std::string> value_;
};

}  // namespace proxy

// The proxy's command line, as the config and auth-client tests drive it.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace test {

inline proxy::parsed_command_line parse(std::vector<std::string> args) {
  std::vector<const char*> argv{"mqtt-proxy"};
  for (auto& a : args) argv.push_back(a.c_str());
  return proxy::parse_command_line(static_cast<int>(argv.size()), argv.data());
}

// The error a command line is refused with; empty when it is accepted.
inline std::string error_of(std::vector<std::string> args) {
  try {
    parse(std::move(args));
  } catch (const proxy::config_error& e) {
    return e.what();
  }
  return "";
}

inline std::string write_file(const std::string& name, const std::string& text) {
  auto path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path) << text;
  return path.string();
}

}  // namespace test

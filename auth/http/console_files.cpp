#include "http/console_files.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <map>
#include <system_error>

namespace auth {
namespace {

constexpr std::uintmax_t max_file_size = 4 * 1024 * 1024;  // MQTT.js's bundle is about 340 KiB

const std::map<std::string, std::string>& content_types() {
  static const std::map<std::string, std::string> types{
      {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},   {".png", "image/png"},
      {".svg", "image/svg+xml"},             {".ico", "image/x-icon"},
      {".txt", "text/plain; charset=utf-8"},
  };
  return types;
}

bool plain_name(const std::string& name) {
  if (name.empty() || name.size() > 100 || name.front() == '.') return false;
  for (unsigned char c : name)
    if (!std::isalnum(c) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

}  // namespace

console_files::console_files(const std::filesystem::path& dir) : dir_(std::filesystem::canonical(dir)) {}

std::optional<std::filesystem::path> console_files::relative_path(const std::string& name) {
  if (name.empty()) return std::filesystem::path("index.html");
  if (name == "vendor/mqtt.min.js") return std::filesystem::path("node_modules/mqtt/dist/mqtt.min.js");
  if (!plain_name(name) || !content_types().contains(std::filesystem::path(name).extension().string()))
    return std::nullopt;
  return std::filesystem::path(name);
}

std::optional<console_file> console_files::find(const std::string& name) const {
  const auto relative = relative_path(name);
  if (!relative) return std::nullopt;
  std::error_code ec;
  // canonical() resolves symbolic links: the file must really be inside dir_.
  const auto path = std::filesystem::canonical(dir_ / *relative, ec);
  if (ec) return std::nullopt;
  const auto [inside, _] = std::mismatch(dir_.begin(), dir_.end(), path.begin(), path.end());
  if (inside != dir_.end() || !std::filesystem::is_regular_file(path, ec)) return std::nullopt;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size > max_file_size) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  console_file file;
  file.body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  file.content_type = content_types().at(relative->extension().string());
  return file;
}

}  // namespace auth

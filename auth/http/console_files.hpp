// The web console's static files (auth/console/), served at /console/ by
// auth-server serve --console-dir DIR.
//
// Only what the console needs is reachable: a plain file name directly in
// DIR (letters, digits, `.`, `_`, `-`, not starting with `.`, with a known
// extension), and vendor/mqtt.min.js, which is the browser bundle of the
// MQTT.js that auth/console/package-lock.json pins
// (DIR/node_modules/mqtt/dist/mqtt.min.js, after `npm ci` there). No other
// path is looked up, and a name whose real path (symbolic links resolved)
// leaves DIR is refused, so neither `..`, an encoded `%2e%2e%2f`, nor a link
// can reach another file.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace auth {

struct console_file {
  std::string body;
  std::string content_type;
};

class console_files {
 public:
  // dir must exist (checked at start-up by the caller).
  explicit console_files(const std::filesystem::path& dir);

  // The file for `name`, the request path after /console/ ("" is index.html),
  // or nullopt (not found, or not a name that is served).
  std::optional<console_file> find(const std::string& name) const;

  const std::filesystem::path& dir() const { return dir_; }

  // Exposed for tests: the path `name` maps to inside dir, before any lookup.
  static std::optional<std::filesystem::path> relative_path(const std::string& name);

 private:
  std::filesystem::path dir_;  // canonical
};

}  // namespace auth

// Failed-login accounting in a sliding window, with attempts reserved before
// the password is checked: an attempt counts against the limits from the
// moment it is admitted, so N parallel guesses are never more than the limit.
//
// Three keys per attempt (see auth/API.md, "Login throttling"):
//  - (user, address): `per_pair` failures lock this pair out (429) until the
//    oldest leaves the window. The real user elsewhere is not affected.
//  - address: `per_address` failures from one address, whatever the user
//    names, lock the address out (429): password spraying.
//  - user, from any address: past `slow_after` failures every attempt for the
//    user is delayed (delay_step per further failure, at most max_delay), never
//    refused, so nobody can lock a user out by guessing from elsewhere.
// Thread-safe; memory bounded by pruning keys whose failures left the window.
#pragma once

#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

namespace auth {

class login_throttle {
 public:
  using clock = std::chrono::steady_clock;
  struct limits {
    std::size_t per_pair = 5;
    std::size_t per_address = 20;
    std::size_t slow_after = 10;
    std::chrono::milliseconds delay_step{500};
    std::chrono::milliseconds max_delay{3000};
    std::chrono::seconds window{300};
  };

  // An admitted attempt. Report its outcome with failed() or succeeded();
  // destroyed without either (e.g. the server was busy), it counts for nothing.
  class ticket {
   public:
    ticket() = default;
    ticket(ticket&& other) noexcept;
    ticket& operator=(ticket&& other) noexcept;
    ticket(const ticket&) = delete;
    ticket& operator=(const ticket&) = delete;
    ~ticket();
    explicit operator bool() const { return owner_ != nullptr; }
    void failed(clock::time_point now);
    void succeeded();

   private:
    friend class login_throttle;
    ticket(login_throttle* owner, std::string pair, std::string address, std::string user)
        : owner_(owner), pair_(std::move(pair)), address_(std::move(address)), user_(std::move(user)) {}
    void finish(bool failed, clock::time_point now);
    login_throttle* owner_ = nullptr;
    std::string pair_, address_, user_;
  };

  struct decision {
    ticket admitted;                        // empty: refused
    std::chrono::seconds retry_after{0};    // when refused
    std::chrono::milliseconds delay{0};     // when admitted: wait this long before checking
  };

  explicit login_throttle(limits limits);
  decision reserve(const std::string& user, const std::string& address, clock::time_point now);

 private:
  struct entry {
    std::deque<clock::time_point> failures;  // within the window, oldest first
    std::size_t in_flight = 0;
  };
  entry& at(const std::string& key, clock::time_point now);
  std::chrono::seconds wait_for(const entry& e, clock::time_point now) const;
  void prune(clock::time_point now);

  std::mutex mutex_;
  limits limits_;
  std::size_t kept_;  // failures remembered per key: enough for every limit and the longest delay
  std::unordered_map<std::string, entry> entries_;
};

}  // namespace auth

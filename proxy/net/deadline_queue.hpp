// The deadlines of one worker's connections, earliest first, so that one
// timer per worker (net/deadline_service.hpp) stands in for one per
// connection, as HAProxy keeps one timer tree per thread. A steady_timer per
// connection cost 120 B, plus its pending wait (~200 B in a recycled asio
// block) and an entry in asio's timer heap: ~350 B of every idle connection
// (issue 14). An entry here is an intrusive tree hook and a time: 40 B.
//
// Pure: no clock, no I/O; the service passes `now`. Entries unlink
// themselves when destroyed, and a destroyed queue unlinks all of its
// entries, so either may go first. One thread only.
#pragma once

#include <chrono>
#include <cstddef>

#include <boost/intrusive/set.hpp>

namespace proxy {

class deadline_entry {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  bool scheduled() const { return hook_.is_linked(); }
  // When it is due; meaningful while scheduled().
  time_point due() const { return at_; }

 protected:
  deadline_entry() = default;
  ~deadline_entry() = default;  // the auto-unlink hook leaves the queue
  deadline_entry(const deadline_entry&) = delete;
  deadline_entry& operator=(const deadline_entry&) = delete;

 private:
  friend class deadline_queue;
  // Called once the entry is due, after it left the queue (it may schedule itself again).
  virtual void on_deadline() = 0;

  using hook = boost::intrusive::set_member_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>,
                                                 boost::intrusive::optimize_size<true>>;
  hook hook_;
  time_point at_{};
};

class deadline_queue {
 public:
  using time_point = deadline_entry::time_point;

  deadline_queue() = default;
  deadline_queue(const deadline_queue&) = delete;
  deadline_queue& operator=(const deadline_queue&) = delete;
  ~deadline_queue() { entries_.clear(); }  // unlinks: entries may outlive the queue

  // Due at `at`: scheduled anew if it was already.
  void schedule(deadline_entry& entry, time_point at) {
    if (entry.scheduled()) entries_.erase(entries_.iterator_to(entry));
    entry.at_ = at;
    entries_.insert(entry);
  }
  void cancel(deadline_entry& entry) {
    if (entry.scheduled()) entries_.erase(entries_.iterator_to(entry));
  }
  bool empty() const { return entries_.empty(); }
  // The earliest due time; time_point::max() when there is none.
  time_point earliest() const { return entries_.empty() ? time_point::max() : entries_.begin()->at_; }

  // Takes each entry due at `now` out, earliest first, and calls it. An entry
  // that schedules itself again for `now` or earlier is called again: the
  // caller's on_deadline must move its time forward (a connection clears a
  // deadline before it fires). Returns how many were called.
  std::size_t fire_due(time_point now) {
    std::size_t fired = 0;
    while (!entries_.empty() && entries_.begin()->at_ <= now) {
      auto& entry = *entries_.begin();
      entries_.erase(entries_.begin());
      ++fired;
      entry.on_deadline();  // may schedule, cancel or destroy any entry
    }
    return fired;
  }

 private:
  struct by_time {
    bool operator()(const deadline_entry& a, const deadline_entry& b) const { return a.at_ < b.at_; }
  };
  using member = boost::intrusive::member_hook<deadline_entry, deadline_entry::hook, &deadline_entry::hook_>;
  boost::intrusive::multiset<deadline_entry, member, boost::intrusive::compare<by_time>,
                             boost::intrusive::constant_time_size<false>>
      entries_;
};

}  // namespace proxy

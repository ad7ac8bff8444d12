// One deadline_queue per io_context (one per worker), driven by one
// steady_timer armed for the queue's earliest entry. A service of the
// io_context, so it lives exactly as long as the context: its timer goes in
// the context's shutdown, before the timer service it uses, and the queue
// outlives the connections that the context's shutdown destroys (their
// entries unlink from it). Touched only on the context's own thread.
#pragma once

#include <optional>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/steady_timer.hpp>

#include "net/deadline_queue.hpp"

namespace proxy {

class deadline_service : public boost::asio::execution_context::service {
 public:
  using key_type = deadline_service;
  using time_point = deadline_queue::time_point;
  static inline boost::asio::execution_context::id id;

  explicit deadline_service(boost::asio::execution_context& context) : service(context) {}

  // The service of the context that `executor` runs on.
  static deadline_service& of(const boost::asio::any_io_executor& executor) {
    auto& context = boost::asio::query(executor, boost::asio::execution::context);
    auto& self = boost::asio::use_service<deadline_service>(context);
    if (!self.timer_ && !self.shut_down_) self.timer_.emplace(executor);
    return self;
  }

  void schedule(deadline_entry& entry, time_point at) {
    queue_.schedule(entry, at);
    arm();
  }
  // The timer stays armed; a wake-up with nothing due re-arms for what is left.
  void cancel(deadline_entry& entry) { queue_.cancel(entry); }
  const deadline_queue& queue() const { return queue_; }

 private:
  void shutdown() override {
    shut_down_ = true;
    timer_.reset();
  }

  // Exactly one wait is outstanding while the timer is armed: moving the
  // expiry cancels the wait, and that wait's handler starts the next one.
  void arm() {
    const auto earliest = queue_.earliest();
    if (!timer_ || earliest == time_point::max()) return;
    if (waiting_ && armed_for_ <= earliest) return;  // an earlier wake-up re-arms for it
    armed_for_ = earliest;
    timer_->expires_at(earliest);
    if (waiting_) return;
    waiting_ = true;
    timer_->async_wait([this](boost::system::error_code) {
      waiting_ = false;
      queue_.fire_due(std::chrono::steady_clock::now());
      arm();
    });
  }

  deadline_queue queue_;
  std::optional<boost::asio::steady_timer> timer_;
  time_point armed_for_ = time_point::max();
  bool waiting_ = false;
  bool shut_down_ = false;
};

}  // namespace proxy

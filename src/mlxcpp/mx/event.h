// A one-shot signal between the thread that schedules work and the stream that runs it.
#pragma once

#include <condition_variable>
#include <exception>
#include <mutex>

namespace mx {

class Event {
 public:
  void signal(std::exception_ptr error = nullptr) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      done_ = true;
      error_ = error;
    }
    cv_.notify_all();
  }
  // Waits, then rethrows the error the work raised, if any.
  void wait() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return done_; });
    if (error_) std::rethrow_exception(error_);
  }
  bool is_signaled() {
    std::lock_guard<std::mutex> lk(mu_);
    return done_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
};

}  // namespace mx

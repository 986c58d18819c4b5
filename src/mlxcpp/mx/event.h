// A one-shot signal between the thread that schedules work and the stream that runs it.
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <vector>

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
  // Work that the task only launched (GPU kernels) finishes later: `w`
  // blocks until it has. Set before signal().
  // `gpu_streams`: the mx gpu streams the launched work ran on.
  void set_device_wait(std::function<void()> w, std::vector<int> gpu_streams) {
    std::lock_guard<std::mutex> lk(mu_);
    device_wait_ = std::move(w);
    gpu_streams_ = std::move(gpu_streams);
  }
  // Waits until the work was run or launched (not for the device), then
  // rethrows the error it raised, if any. Returns the gpu streams whose
  // launched work wait() would also wait for.
  std::vector<int> wait_launched() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return done_; });
    if (error_) std::rethrow_exception(error_);
    return device_wait_ ? gpu_streams_ : std::vector<int>{};
  }
  // Waits (for the launched device work too), then rethrows the error the
  // work raised, if any.
  void wait() {
    std::function<void()> device_wait;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return done_; });
      if (error_) std::rethrow_exception(error_);
      device_wait = device_wait_;
    }
    if (device_wait) device_wait();
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
  std::function<void()> device_wait_;
  std::vector<int> gpu_streams_;
};

}  // namespace mx

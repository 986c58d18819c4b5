// Shared helpers of the server tests: the trained echo model, its transformers reference,
// and collecting a request's events from the engine.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lm/tokenizer_test_util.h"
#include "mlxcpp/lm/load.h"
#include "mlxcpp/lm/server/engine.h"

namespace servertest {

inline std::filesystem::path echo_dir() {
  return std::filesystem::path(MLXCPP_TEST_DATA).parent_path().parent_path() / "models" /
         "gemma3-tiny-echo";
}

inline const lm::LoadedModel& echo() {
  static lm::LoadedModel m = lm::load(echo_dir().string());
  return m;
}

inline const nlohmann::json& reference() {
  static nlohmann::json r = nlohmann::json::parse(
      lm::testing::slurp(lm::testing::data_dir() / "gemma3/copy_trained/reference.json"));
  return r;
}

struct Collected {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;  // of the tokens (jobs with logprobs)
  std::string text;
  lm::server::Event final;
};

inline Collected collect(const std::shared_ptr<lm::server::RequestStream>& s) {
  Collected c;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
       std::chrono::steady_clock::now() < deadline;) {
    for (auto& e : s->next(std::chrono::milliseconds(200))) {
      for (auto& t : e.tokens) {
        c.tokens.push_back(t.id);
        c.logprobs.push_back(t.logprob);
      }
      c.text += e.text;
      if (e.finish_reason) {
        c.final = e;
        return c;
      }
    }
  }
  ADD_FAILURE() << "the engine did not finish in time";
  return c;
}

inline lm::server::GenerationJob greedy_job(const std::vector<int32_t>& prompt, int max_tokens) {
  lm::server::GenerationJob j;
  j.prompt = prompt;
  j.max_tokens = max_tokens;
  j.logprobs = true;
  return j;
}

}  // namespace servertest

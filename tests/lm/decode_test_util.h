// Shared by the fixed-shape decode tests (test_static_decode, test_gpu_decode_graph): the
// transformers reference of a Gemma 3 fixture and a decode's tokens with their log-probabilities.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lm/tokenizer_test_util.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/transforms.h"

namespace lm::testing {

// The first prompt of tests/data/gemma3/NAME/reference.json and transformers' greedy tokens.
struct DecodeReference {
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;
};

inline DecodeReference decode_reference(const std::string& name) {
  std::ifstream f(data_dir() / "gemma3" / name / "reference.json");
  auto j = nlohmann::json::parse(f);
  return {j.at("prompt_tokens").at(0).get<std::vector<int32_t>>(),
          j.at("greedy").at(0).get<std::vector<int32_t>>()};
}

struct Decoded {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logprobs;
};

inline std::vector<float> floats(const mx::array& a) {
  auto f = mx::astype(a, mx::float32);
  mx::eval(f);
  return std::vector<float>(f.data<float>(), f.data<float>() + f.size());
}

}  // namespace lm::testing

// libFuzzer target for the safetensors and npy parsers: any input must either
// parse or raise std::runtime_error — never crash, hang or read out of bounds.
// Build: cmake -DMLXCPP_BUILD_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ (see fuzz/CMakeLists.txt).
#include <cstdint>
#include <stdexcept>

#include "mlxcpp/mx/io.h"
#include "mlxcpp/mx/ops.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto loaded = mx::io::parse_safetensors(data, size, "fuzz", nullptr);
    for (auto& [name, a] : loaded.first) {
      // Touch the first and last byte of every view.
      if (a.nbytes() > 0) {
        volatile uint8_t first = a.data<uint8_t>()[0];
        volatile uint8_t last = a.data<uint8_t>()[a.nbytes() - 1];
        (void)first;
        (void)last;
      }
    }
  } catch (const std::runtime_error&) {
  }
  try {
    mx::io::parse_npy(data, size, "fuzz");
  } catch (const std::runtime_error&) {
  }
  return 0;
}

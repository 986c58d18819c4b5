// A computation recorded once on the GPU and replayed with no host work per node: a CUDA
// graph. Decoding one token runs hundreds of small kernels whose launches, each prepared by
// the host through the evaluation engine, take longer than the kernels; a replay launches
// them all with one call.
//
// The graph bakes in the addresses of every buffer its kernels read or write, so it owns
// them: its inputs (copies of the values it was made from), every intermediate and output, and
// the constants and weights the computation reads. Shapes are fixed; values that change from
// replay to replay live in the input buffers (a token, a position, a random key) and are
// either fed back from outputs on the device (feedback) or written in place by the computation
// itself (mx::slice_update_in_place, for a cache).
#pragma once

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"

namespace mx {

class CapturedGraph {
 public:
  using Build = std::function<std::vector<array>(const std::vector<array>& inputs)>;

  // Copies `inputs` (evaluated on demand) into buffers the graph owns, then records
  // build(those copies) on the GPU stream `s`: build makes the outputs lazily from the inputs it
  // is given, and is called twice (once evaluated normally, which also prepares lazily made
  // weights and kernel plans, once recorded), so it must build the same computation each time.
  // feedback: (output, input) pairs of equal shape and dtype; at the end of every replay the
  // output's value is copied into the input, for the next replay to read.
  // Throws std::invalid_argument when a node of the computation runs elsewhere than on `s`
  // or a feedback pair does not match, std::runtime_error when CUDA refuses the recording, and
  // when the build has no GPU backend.
  CapturedGraph(const std::vector<array>& inputs, const Build& build,
                std::vector<std::pair<int, int>> feedback = {}, StreamOrDevice s = {});
  ~CapturedGraph();
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;

  // Launches one replay after the work queued on the stream so far and returns copies of the
  // outputs listed in `take`, each made on the device right after this replay; they become
  // available (host reads wait) once it has run. Never waits for the device itself.
  std::vector<array> replay(const std::vector<int>& take = {});

  // The graph's input buffers, holding the values the last replay left (feedback and in-place
  // writes included) once the stream has been synchronized (mx::synchronize).
  const std::vector<array>& inputs() const;
  const Stream& stream() const;
  int num_outputs() const;

  // Whether graphs can be recorded here (a GPU backend and a device).
  static bool is_available();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace mx

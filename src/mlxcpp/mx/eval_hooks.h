// Hooks into one evaluation, for facilities that must observe the launches of a graph as they
// happen on the stream's worker thread (CUDA graph capture). Internal to mx.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "mlxcpp/mx/array.h"

namespace mx::detail {

// Called on the worker thread of the stream that runs the evaluation:
//   before  once the arrays of earlier evaluations it reads are ready, before the first node;
//   node    before each node that still has to run (it may throw to stop the evaluation);
//   after   once every node has been launched, before the evaluation marks its end on the
//           stream;
//   abort   instead of `after` when the evaluation stopped on an error.
struct EvalHooks {
  std::function<void()> before;
  std::function<void(const array& node)> node;
  std::function<void()> after;
  std::function<void()> abort;
};

// eval() with hooks; rethrows what the evaluation (or a hook) threw.
void eval_with_hooks(std::vector<array> outputs, std::shared_ptr<const EvalHooks> hooks);

}  // namespace mx::detail

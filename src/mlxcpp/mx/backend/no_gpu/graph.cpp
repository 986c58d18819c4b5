// Without a GPU backend there is no device to record a graph on.
#include <stdexcept>

#include "mlxcpp/mx/graph.h"

namespace mx {

struct CapturedGraph::Impl {
  Stream stream{0, Device(Device::cpu)};
  std::vector<array> inputs;
  int num_outputs = 0;
};

CapturedGraph::CapturedGraph(const std::vector<array>&, const Build&,
                             std::vector<std::pair<int, int>>, StreamOrDevice) {
  throw std::runtime_error("[CapturedGraph] this build has no GPU backend to record a graph on");
}
CapturedGraph::~CapturedGraph() = default;
std::vector<array> CapturedGraph::replay(const std::vector<int>&) { return {}; }
const std::vector<array>& CapturedGraph::inputs() const { return impl_->inputs; }
const Stream& CapturedGraph::stream() const { return impl_->stream; }
int CapturedGraph::num_outputs() const { return impl_->num_outputs; }
bool CapturedGraph::is_available() { return false; }

}  // namespace mx

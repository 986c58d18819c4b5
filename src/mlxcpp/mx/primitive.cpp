#include "mlxcpp/mx/primitive.h"

#include <mutex>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <unordered_map>

namespace mx {

namespace {
struct Registry {
  std::mutex mu;
  std::unordered_map<std::type_index, GpuKernel> kernels;
};
Registry& registry() {
  static Registry r;
  return r;
}
}  // namespace

namespace gpu_registry {
void add(std::type_index type, GpuKernel kernel) {
  std::lock_guard<std::mutex> lk(registry().mu);
  registry().kernels[type] = kernel;
}
GpuKernel find(std::type_index type) {
  std::lock_guard<std::mutex> lk(registry().mu);
  auto it = registry().kernels.find(type);
  return it == registry().kernels.end() ? nullptr : it->second;
}
}  // namespace gpu_registry

namespace {
// The kernel of a primitive type, looked up once per thread: every launched
// node asks, and the registry's lookup takes a lock and hashes the type's
// name. Kernels register at load time, before any node runs; a type with
// none is not cached (its error path is not hot).
GpuKernel cached_kernel(const std::type_info& type) {
  thread_local std::unordered_map<const std::type_info*, GpuKernel> cache;
  auto it = cache.find(&type);
  if (it != cache.end()) return it->second;
  GpuKernel k = gpu_registry::find(std::type_index(type));
  if (k) cache.emplace(&type, k);
  return k;
}
}  // namespace

void Primitive::eval_gpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto k = cached_kernel(typeid(*this));
  if (!k) {
    throw std::runtime_error(std::string("[") + name() + "] has no GPU kernel in this build");
  }
  k(*this, inputs, outputs);
}

std::vector<array> Primitive::jvp(const std::vector<array>&, const std::vector<array>&,
                                  const std::vector<int>&) {
  throw std::invalid_argument(std::string("[") + name() + "] is not differentiable (no jvp rule)");
}

std::vector<array> Primitive::vjp(const std::vector<array>&, const std::vector<array>&,
                                  const std::vector<int>&, const std::vector<array>&) {
  throw std::invalid_argument(std::string("[") + name() + "] is not differentiable (no vjp rule)");
}

std::pair<std::vector<array>, std::vector<int>> Primitive::vmap(const std::vector<array>&,
                                                                const std::vector<int>&) {
  throw std::invalid_argument(std::string("[") + name() + "] cannot be batched by vmap");
}

std::vector<Shape> Primitive::output_shapes(const std::vector<array>&) {
  throw std::invalid_argument(std::string("[") + name() + "] cannot infer output shapes");
}

}  // namespace mx

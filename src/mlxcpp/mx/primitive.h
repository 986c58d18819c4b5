// The base of every primitive: what one graph node needs to run, differentiate
// and batch an op. Each family of ops declares its primitives in its own header
// (primitives/*.h); CPU kernels live in backend/cpu/, GPU kernels in backend/cuda/.
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <typeindex>
#include <utility>
#include <vector>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"

namespace mx {

class Primitive {
 public:
  explicit Primitive(Stream stream) : stream_(stream) {}
  virtual ~Primitive() = default;
  Primitive(const Primitive&) = delete;
  Primitive& operator=(const Primitive&) = delete;

  const Stream& stream() const { return stream_; }

  virtual void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) = 0;
  // Runs the kernel the GPU backend registered for this primitive's type (see
  // gpu_registry below); throws naming the primitive when there is none.
  virtual void eval_gpu(const std::vector<array>& inputs, std::vector<array>& outputs);

  // Forward-mode derivative: tangents of the outputs given tangents of the
  // inputs at `argnums`.
  virtual std::vector<array> jvp(const std::vector<array>& primals,
                                 const std::vector<array>& tangents,
                                 const std::vector<int>& argnums);
  // Reverse-mode derivative: cotangents of the inputs at `argnums`.
  virtual std::vector<array> vjp(const std::vector<array>& primals,
                                 const std::vector<array>& cotangents,
                                 const std::vector<int>& argnums,
                                 const std::vector<array>& outputs);
  // Batched version: inputs carry a batch axis at `axes` (-1: not batched).
  // Returns the outputs and their batch axes.
  virtual std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                               const std::vector<int>& axes);

  virtual const char* name() const = 0;
  virtual void print(std::ostream& os) { os << name(); }
  // Whether `other` computes the same function (same type and parameters).
  virtual bool is_equivalent(const Primitive& other) const { return false; }
  // Shapes of the outputs for these inputs, for shapeless recompilation.
  virtual std::vector<Shape> output_shapes(const std::vector<array>& inputs);

 private:
  Stream stream_;
};

// A primitive with one output.
class UnaryPrimitive : public Primitive {
 public:
  using Primitive::Primitive;
  virtual void eval_cpu(const std::vector<array>& inputs, array& out) = 0;
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    eval_cpu(inputs, outputs[0]);
  }
};

// Kernels of the GPU backend, registered by primitive type from the backend's
// own files, so the core never names them.
using GpuKernel = void (*)(Primitive& p, const std::vector<array>& inputs,
                           std::vector<array>& outputs);
namespace gpu_registry {
void add(std::type_index type, GpuKernel kernel);
GpuKernel find(std::type_index type);
}  // namespace gpu_registry

}  // namespace mx

// Evaluation and function transforms (MLX's names and semantics).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"

namespace mx {

// Evaluates the arrays (and everything they depend on) and waits.
void eval(std::vector<array> outputs);
template <typename... Arrays>
void eval(Arrays&&... outputs) {
  eval(std::vector<array>{std::forward<Arrays>(outputs)...});
}
// Schedules the evaluation and returns at once; reading the data waits.
void async_eval(std::vector<array> outputs);

// The arrays (evaluated first) with their data resident in the memory of the
// stream's device: on a GPU, copies in unified memory that lives on the device
// (host reads keep working), for arrays whose data is elsewhere, such as
// mmap'd checkpoint pages; on the CPU, the arrays themselves.
std::vector<array> to_device_memory(std::vector<array> arrays, StreamOrDevice s = {});
// Device-to-device copy bandwidth of the GPU (bytes read + written per
// second, GB/s): the best of `repeats` copies of `bytes`. Throws without a GPU.
double gpu_copy_bandwidth_gbs(size_t bytes = size_t{1} << 30, int repeats = 10);

using ParamMap = std::map<std::string, array>;

// ---- reverse mode ----
// Returns (outputs of fun, cotangents of the primals).
std::pair<std::vector<array>, std::vector<array>> vjp(
    const std::function<std::vector<array>(const std::vector<array>&)>& fun,
    const std::vector<array>& primals, const std::vector<array>& cotangents);
std::pair<array, array> vjp(const std::function<array(const array&)>& fun, const array& primal,
                            const array& cotangent);

// ---- forward mode ----
// Returns (outputs of fun, tangents of the outputs).
std::pair<std::vector<array>, std::vector<array>> jvp(
    const std::function<std::vector<array>(const std::vector<array>&)>& fun,
    const std::vector<array>& primals, const std::vector<array>& tangents);
std::pair<array, array> jvp(const std::function<array(const array&)>& fun, const array& primal,
                            const array& tangent);

// ---- gradients of scalar functions ----
using ValueAndGradFn =
    std::function<std::pair<std::vector<array>, std::vector<array>>(const std::vector<array>&)>;
using SimpleValueAndGradFn =
    std::function<std::pair<array, std::vector<array>>(const std::vector<array>&)>;

// The first output of fun must be a scalar; gradients with respect to the
// arguments at `argnums`. Extra outputs are returned with the value (has_aux).
ValueAndGradFn value_and_grad(
    const std::function<std::vector<array>(const std::vector<array>&)>& fun,
    const std::vector<int>& argnums = {0});
SimpleValueAndGradFn value_and_grad(const std::function<array(const std::vector<array>&)>& fun,
                                    const std::vector<int>& argnums = {0});
std::function<std::pair<array, array>(const array&)> value_and_grad(
    const std::function<array(const array&)>& fun);

std::function<std::vector<array>(const std::vector<array>&)> grad(
    const std::function<array(const std::vector<array>&)>& fun,
    const std::vector<int>& argnums = {0});
std::function<array(const array&)> grad(const std::function<array(const array&)>& fun);

// Over named parameter maps: fun(params, other args) -> scalar (first output).
using ParamFn = std::function<std::vector<array>(const ParamMap&, const std::vector<array>&)>;
std::function<std::pair<std::vector<array>, ParamMap>(const ParamMap&, const std::vector<array>&)>
value_and_grad(const ParamFn& fun);
std::function<ParamMap(const ParamMap&, const std::vector<array>&)> grad(const ParamFn& fun);

// ---- batching ----
// Maps fun over axis in_axes[i] of each input (-1: not mapped); outputs carry
// the mapped axis at out_axes[j].
std::function<std::vector<array>(const std::vector<array>&)> vmap(
    const std::function<std::vector<array>(const std::vector<array>&)>& fun,
    const std::vector<int>& in_axes = {}, const std::vector<int>& out_axes = {});
std::function<array(const array&)> vmap(const std::function<array(const array&)>& fun,
                                        int in_axis = 0, int out_axis = 0);
std::function<array(const array&, const array&)> vmap(
    const std::function<array(const array&, const array&)>& fun, int in_axis_a = 0,
    int in_axis_b = 0, int out_axis = 0);

// ---- memory ----
// Recomputes fun's intermediates in the backward pass instead of keeping them.
std::function<std::vector<array>(const std::vector<array>&)> checkpoint(
    const std::function<std::vector<array>(const std::vector<array>&)>& fun);

// ---- custom derivatives ----
// Computes fun, but reverse mode calls fun_vjp(primals, cotangents, outputs),
// which returns one cotangent per primal, instead of differentiating fun.
// Forward mode and vmap go through fun itself (vmap keeps fun_vjp, batched).
std::function<std::vector<array>(const std::vector<array>&)> custom_vjp(
    std::function<std::vector<array>(const std::vector<array>&)> fun,
    std::function<std::vector<array>(const std::vector<array>&, const std::vector<array>&,
                                     const std::vector<array>&)>
        fun_vjp);

namespace detail {
// While > 0, evaluated arrays keep their graph (a transform is tracing).
bool in_tracing();
struct TracingScope {
  TracingScope();
  ~TracingScope();
};
}  // namespace detail

}  // namespace mx

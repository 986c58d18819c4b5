// CUDA kernels of Quantize and Dequantize, and the dispatch of
// QuantizedMatmul to the matrix-vector kernel (qgemv.cu) or the GEMM
// (qgemm.cu). Quantize and Dequantize repeat the CPU kernels'
// (backend/cpu/quantized.cpp) arithmetic operation by operation, so both
// devices give the same bits: one thread per group (quantize) or per block of
// 32 values (dequantize), IEEE division and rint as on the CPU.
#include <cmath>
#include <optional>

#include "mlxcpp/mx/backend/cuda/quantized.cuh"
#include "mlxcpp/mx/primitives/fast.h"

namespace mx::cuda {
namespace {

using quant::ScaleType;

// ---------------------------------------------------------------- quantize

// Packs `n` codes of `bits` each (n * bits a multiple of 32) LSB first.
struct WordWriter {
  uint32_t* p;
  int bits;
  uint64_t buf = 0;
  int have = 0;
  __device__ void put(uint32_t v) {
    buf |= static_cast<uint64_t>(v) << have;
    have += bits;
    if (have >= 32) {
      *p++ = static_cast<uint32_t>(buf);
      buf >>= 32;
      have -= 32;
    }
  }
};

template <typename T>
__global__ void affine_quantize_kernel(const T* w, uint32_t* wq, T* scales, T* biases,
                                       int64_t ngroups_total, int g, int bits) {
  const int64_t gi = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (gi >= ngroups_total) return;
  const T* grp = w + gi * g;
  const float n_bins = static_cast<float>((1 << bits) - 1);
  float wmax = static_cast<float>(grp[0]), wmin = wmax;
  for (int i = 1; i < g; ++i) {
    const float v = static_cast<float>(grp[i]);
    if (v > wmax) wmax = v;
    if (v < wmin) wmin = v;
  }
  // std::max(a, b) of the CPU kernel: b only when a < b.
  float s = __fdiv_rn(__fsub_rn(wmax, wmin), n_bins);
  if (s < 1e-7f) s = 1e-7f;
  const bool min_edge = fabsf(wmin) > fabsf(wmax);
  const float edge = min_edge ? wmin : wmax;
  float scale = min_edge ? s : -s;
  const float q0 = rintf(__fdiv_rn(edge, scale));
  float bias = 0.0f;
  if (q0 != 0.0f) {
    scale = __fdiv_rn(edge, q0);
    bias = edge;
  }
  WordWriter out{wq + gi * g * bits / 32, bits};
  for (int i = 0; i < g; ++i) {
    float q = rintf(__fdiv_rn(__fsub_rn(static_cast<float>(grp[i]), bias), scale));
    q = q < 0.0f ? 0.0f : (n_bins < q ? n_bins : q);  // std::clamp
    out.put(static_cast<uint32_t>(q));
  }
  scales[gi] = static_cast<T>(scale);
  biases[gi] = static_cast<T>(bias);
}

// The code of the nearest E2M1 value; the first code wins a tie.
__device__ uint32_t fp4_encode(float v) {
  uint32_t best = 0;
  float dist = fabsf(__fsub_rn(v, quant::fp4_decode(0)));
  for (uint32_t i = 1; i < 16; ++i) {
    const float d = fabsf(__fsub_rn(v, quant::fp4_decode(i)));
    if (d < dist) {
      dist = d;
      best = i;
    }
  }
  return best;
}

// Nearest E4M3 value (ties to an even mantissa), saturating at +-448; NaN
// gives 0x7f.
__device__ uint32_t e4m3_encode(float v) {
  if (isnan(v)) return 0x7f;
  const uint32_t sign = signbit(v) ? 0x80 : 0;
  const float a = fabsf(v);
  if (a >= 448.0f) return sign | 0x7e;
  int code;
  if (a < 0.015625f) {
    code = static_cast<int>(rintf(ldexpf(a, 9)));
  } else {
    int e;
    frexpf(a, &e);
    e -= 1;
    int m = static_cast<int>(rintf(__fmul_rn(__fsub_rn(ldexpf(a, -e), 1.0f), 8.0f)));
    if (m == 8) {
      m = 0;
      ++e;
    }
    code = ((e + 7) << 3) | m;
    if (code > 0x7e) code = 0x7e;
  }
  return sign | static_cast<uint32_t>(code);
}

template <typename T>
__global__ void fp_quantize_kernel(const T* w, uint32_t* wq, uint8_t* scales, int64_t ngroups_total,
                                   int g, QuantizationMode mode) {
  const int64_t gi = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (gi >= ngroups_total) return;
  const T* grp = w + gi * g;
  const int bits = mode == QuantizationMode::mxfp8 ? 8 : 4;
  float amax = 0.0f;
  for (int i = 0; i < g; ++i) {
    const float a = fabsf(static_cast<float>(grp[i]));
    if (amax < a) amax = a;
  }
  float inv;
  uint32_t sbyte;
  if (mode == QuantizationMode::nvfp4) {
    sbyte = e4m3_encode(__fdiv_rn(amax, 6.0f));
    const float sv = quant::e4m3_decode(sbyte);
    inv = sv > 0.0f ? __fdiv_rn(1.0f, sv) : 0.0f;
  } else {
    const float s = __fdiv_rn(amax, mode == QuantizationMode::mxfp8 ? 448.0f : 6.0f);
    // log2 rounded to float as the CPU's log2f (double precision, then one rounding).
    int e =
        s > 0.0f ? static_cast<int>(rintf(static_cast<float>(log2(static_cast<double>(s))))) : 0;
    e = e < -127 ? -127 : (e > 127 ? 127 : e);
    sbyte = static_cast<uint32_t>(e + 127);
    inv = ldexpf(1.0f, -e);
  }
  WordWriter out{wq + gi * g * bits / 32, bits};
  for (int i = 0; i < g; ++i) {
    const float v = __fmul_rn(static_cast<float>(grp[i]), inv);
    out.put(mode == QuantizationMode::mxfp8 ? e4m3_encode(v) : fp4_encode(v));
  }
  scales[gi] = static_cast<uint8_t>(sbyte);
}

void quantize_gpu(Primitive& prim, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& q = static_cast<Quantize&>(prim);
  array w = ensure_row_contiguous(inputs[0], prim.stream());
  for (auto& o : outputs) allocate_row_contiguous(o);
  const int K = w.shape(-1);
  if (K == 0 || w.size() == 0) return;
  const int64_t ngroups = static_cast<int64_t>(w.size()) / q.group_size();
  const unsigned blocks = static_cast<unsigned>((ngroups + 127) / 128);
  cudaStream_t cs = stream_of(prim);
  dispatch_float(w.dtype(), "Quantize", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, double>) {
      throw std::invalid_argument("[Quantize] needs float32, float16 or bfloat16 weights");
    } else if (q.mode() == QuantizationMode::affine) {
      affine_quantize_kernel<T><<<blocks, 128, 0, cs>>>(w.data<T>(), outputs[0].data<uint32_t>(),
                                                        outputs[1].data<T>(), outputs[2].data<T>(),
                                                        ngroups, q.group_size(), q.bits());
    } else {
      fp_quantize_kernel<T><<<blocks, 128, 0, cs>>>(w.data<T>(), outputs[0].data<uint32_t>(),
                                                    outputs[1].data<uint8_t>(), ngroups,
                                                    q.group_size(), q.mode());
    }
  });
  check_launch("Quantize");
}

// ---------------------------------------------------------------- dequantize

// One thread per chunk of C values (32, or 16 for nvfp4's groups of 16); A is
// the arithmetic type (float64 when the scales or the output are).
template <typename O, typename A>
__global__ void dequantize_kernel(const uint32_t* w, const void* scales, const void* biases,
                                  ScaleType st, O* out, int64_t nchunks, int C, int g, int bits,
                                  QuantizationMode mode) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= nchunks) return;
  const int nw = C * bits / 32;
  uint32_t wv[9];
  for (int i = 0; i < nw; ++i) wv[i] = w[c * nw + i];
  wv[nw] = 0;
  O* o = out + c * C;
  const int64_t first = c * C;  // flat index of the chunk's first value
  if (mode == QuantizationMode::affine) {
    const int64_t gidx = first / g;
    const A s = quant::load_scale<A>(scales, gidx, st);
    const A b = quant::load_scale<A>(biases, gidx, st);
    quant::with_bits(bits, [&](auto bt) {
      constexpr int B = decltype(bt)::value;
#pragma unroll
      for (int e = 0; e < 32; ++e) {
        const A v = fma(s, static_cast<A>(quant::code_at<B>(wv, e)), b);
        o[e] = static_cast<O>(v);
      }
    });
  } else {
    for (int e = 0; e < C; ++e) {
      const float s =
          quant::fp_scale(quant::load_scale<uint32_t>(scales, (first + e) / g, st), mode);
      const float v = mode == QuantizationMode::mxfp8 ? quant::e4m3_decode(quant::code_at<8>(wv, e))
                                                      : quant::fp4_decode(quant::code_at<4>(wv, e));
      o[e] = static_cast<O>(__fmul_rn(v, s));
    }
  }
}

void dequantize_gpu(Primitive& prim, const std::vector<array>& inputs,
                    std::vector<array>& outputs) {
  auto& d = static_cast<Dequantize&>(prim);
  const Stream& s = prim.stream();
  array w = ensure_row_contiguous(inputs[0], s);
  array scales = ensure_row_contiguous(inputs[1], s);
  std::optional<array> biases;
  if (inputs.size() > 2) biases = ensure_row_contiguous(inputs[2], s);
  array& out = outputs[0];
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const int C = d.group_size() < 32 ? d.group_size() : 32;
  const int64_t nchunks = static_cast<int64_t>(out.size()) / C;
  const unsigned blocks = static_cast<unsigned>((nchunks + 127) / 128);
  const ScaleType st = quant::scale_type(scales.dtype());
  const bool wide = st == ScaleType::f64 || out.dtype() == float64;
  cudaStream_t cs = stream_of(prim);
  dispatch_float(out.dtype(), "Dequantize", [&](auto tag) {
    using O = typename decltype(tag)::type;
    const void* bp = biases ? biases->data<void>() : nullptr;
    if (wide) {
      dequantize_kernel<O, double><<<blocks, 128, 0, cs>>>(w.data<uint32_t>(), scales.data<void>(),
                                                           bp, st, out.data<O>(), nchunks, C,
                                                           d.group_size(), d.bits(), d.mode());
    } else {
      dequantize_kernel<O, float><<<blocks, 128, 0, cs>>>(w.data<uint32_t>(), scales.data<void>(),
                                                          bp, st, out.data<O>(), nchunks, C,
                                                          d.group_size(), d.bits(), d.mode());
    }
  });
  check_launch("Dequantize");
}

// ---------------------------------------------------------------- quantized matmul

// `a` itself when row-contiguous (`whole`) or its inner two dims are (batch
// dims may be broadcast views) and its data is 16-byte aligned (the kernels'
// vector loads), else a row-contiguous copy.
array kernel_operand(const array& a, const Stream& s, bool whole) {
  const auto& st = a.strides();
  const int nd = static_cast<int>(a.ndim());
  bool ok = whole ? a.flags().row_contiguous : (st[nd - 1] == 1 || a.shape(-1) == 1);
  if (!whole && nd >= 2 && a.shape(-2) != 1 && st[nd - 2] != a.shape(-1)) ok = false;
  if (reinterpret_cast<uintptr_t>(a.data<void>()) % 16 != 0) ok = false;
  if (ok) return a;
  array tmp(a.shape(), a.dtype(), nullptr, {});
  allocate_row_contiguous(tmp);
  copy_into(a, tmp, s);
  keep_until_done(s, tmp);
  return tmp;
}

// One QuantizedMatmul (inputs x, w, scales[, biases]) into `out`.
void run_quantized_matmul(const Stream& s, cudaStream_t cs, const std::vector<array>& inputs,
                          array& out, int group_size, int bits, QuantizationMode mode,
                          bool transpose) {
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const int K = inputs[0].shape(-1), N = out.shape(-1);
  if (K == 0) {
    check(cudaMemsetAsync(out.data<void>(), 0, out.nbytes(), cs), "QuantizedMatmul");
    return;
  }
  const bool shared = inputs[1].ndim() == 2;
  std::vector<array> ops;
  for (size_t i = 0; i < inputs.size(); ++i) {
    // A 2-D W serves every row of x, which is then one (M, K) matrix.
    ops.push_back(kernel_operand(inputs[i], s, shared));
  }
  quant::QmmArgs a;
  a.x = ops[0].data<void>();
  a.w = ops[1].data<uint32_t>();
  a.scales = ops[2].data<void>();
  a.biases = ops.size() > 3 ? ops[3].data<void>() : nullptr;
  a.out = out.data<void>();
  a.stype = quant::scale_type(ops[2].dtype());
  a.mode = mode;
  a.bits = bits;
  a.group_size = group_size;
  a.transpose = transpose;
  a.K = K;
  a.N = N;
  if (shared) {
    a.M = static_cast<int>(ops[0].size() / K);
  } else {
    a.M = ops[0].shape(-2);
    const int nb = static_cast<int>(out.ndim()) - 2;
    if (nb > kMaxDims) {
      throw std::invalid_argument("[QuantizedMatmul] the GPU kernels handle at most " +
                                  std::to_string(kMaxDims) + " batch dims, got " +
                                  std::to_string(nb));
    }
    a.batch.ndim = nb;
    a.nbatch = 1;
    for (int d = 0; d < nb; ++d) {
      a.batch.shape[d] = out.shape(d);
      a.nbatch *= out.shape(d);
      for (size_t k = 0; k < ops.size(); ++k) {
        a.batch.strides[k][d] = ops[k].shape(d) == 1 ? 0 : ops[k].strides()[d];
      }
    }
  }
  if (a.M == 0) return;
  const Dtype xd = ops[0].dtype();
  const bool vec_rows = a.M <= quant::kQgemvMaxRows ||
                        (a.mode == QuantizationMode::affine && a.M <= quant::kQgemvBlockedRows);
  const bool vec_ok = a.transpose && vec_rows && a.K % 32 == 0 &&
                      (xd == float32 || xd == float16 || xd == bfloat16) &&
                      a.stype != ScaleType::f64;
  if (vec_ok && quant::qgemv_mma_supported(a, xd)) {
    quant::qgemv_mma(a, xd, cs);
  } else if (vec_ok) {
    quant::qgemv(a, xd, cs);
  } else {
    quant::qgemm(a, xd, cs);
  }
}

void quantized_matmul_gpu(Primitive& prim, const std::vector<array>& inputs,
                          std::vector<array>& outputs) {
  auto& qm = static_cast<QuantizedMatmul&>(prim);
  run_quantized_matmul(prim.stream(), stream_of(prim), inputs, outputs[0], qm.group_size(),
                       qm.bits(), qm.mode(), qm.transpose());
}

// The matrices of inputs [first, end) (w, scales, biases each) against x in one launch of the
// tensor-core kernel, where it takes them; false (nothing launched) otherwise. `x` gives the
// shape and dtype; with `pre` its row is computed in the kernel's prologue and its data is not
// read. geglu: gate and up into outputs[0].
bool launch_grouped(const Stream& s, cudaStream_t cs, const array& x,
                    const std::vector<array>& inputs, size_t first, std::vector<array>& outputs,
                    int group_size, int bits, bool geglu, const quant::QmmPrenorm* pre) {
  const int products = static_cast<int>(inputs.size() - first) / 3;
  const int K = x.shape(-1);
  quant::QmmArgs a;
  a.x = pre ? nullptr : x.data<void>();
  a.stype = quant::scale_type(inputs[first + 1].dtype());
  a.bits = bits;
  a.group_size = group_size;
  a.K = K;
  a.M = K > 0 ? static_cast<int>(x.size() / K) : 0;
  a.biases = inputs[first + 2].data<void>();
  if (products > quant::kMaxGroupedQmm || a.M == 0 ||
      !quant::qgemv_mma_supported(a, x.dtype(), pre != nullptr)) {
    return false;
  }
  // Row-contiguous operands; the codes also 16-byte aligned (the kernel's vector loads).
  for (size_t i = first; i < inputs.size(); ++i) {
    if (!inputs[i].flags().row_contiguous ||
        ((i - first) % 3 == 0 && reinterpret_cast<uintptr_t>(inputs[i].data<void>()) % 16 != 0)) {
      return false;
    }
  }
  std::vector<quant::QmmGroup> groups;
  for (int i = 0; i < products; ++i) {
    array& out = outputs[geglu ? 0 : static_cast<size_t>(i)];
    if (i == 0 || !geglu) allocate_row_contiguous(out);  // geglu: one output for both
    const size_t b = first + static_cast<size_t>(3 * i);
    groups.push_back({inputs[b].data<uint32_t>(), inputs[b + 1].data<void>(),
                      inputs[b + 2].data<void>(), out.data<void>(), out.shape(-1)});
  }
  quant::qgemv_mma_grouped(a, groups.data(), products, x.dtype(), cs, geglu, pre);
  return true;
}

// A GroupedQuantizedMatmul: one launch where the tensor-core kernel takes it (a decode step's
// q/k/v or gate/up); otherwise one product each (geglu: then the activation's kernel).
void grouped_quantized_matmul_gpu(Primitive& prim, const std::vector<array>& inputs,
                                  std::vector<array>& outputs) {
  auto& gq = static_cast<GroupedQuantizedMatmul&>(prim);
  const Stream& s = prim.stream();
  cudaStream_t cs = stream_of(prim);
  const array x = kernel_operand(inputs[0], s, true);
  if (launch_grouped(s, cs, x, inputs, 1, outputs, gq.group_size(), gq.bits(), gq.geglu(),
                     nullptr)) {
    return;
  }
  const int products = static_cast<int>(inputs.size() - 1) / 3;
  std::vector<array> gu;  // geglu's gate and up, else the outputs themselves
  for (int i = 0; gq.geglu() && i < products; ++i) {
    gu.emplace_back(outputs[0].shape(), outputs[0].dtype(), nullptr, std::vector<array>{});
  }
  std::vector<array>& prods = gq.geglu() ? gu : outputs;
  for (int i = 0; i < products; ++i) {
    const size_t b = static_cast<size_t>(3 * i);
    run_quantized_matmul(s, cs, {inputs[0], inputs[b + 1], inputs[b + 2], inputs[b + 3]},
                         prods[static_cast<size_t>(i)], gq.group_size(), gq.bits(),
                         QuantizationMode::affine, true);
  }
  if (gq.geglu()) {
    fast::GeluApproxMul act(s);
    gpu_registry::find(typeid(fast::GeluApproxMul))(act, gu, outputs);
    keep_until_done(s, gu[0]);
    keep_until_done(s, gu[1]);
  }
}

// A ResidualNormQuantizedMatmul of one row: the products' launch computes the norms as it
// stages x (block 0 writes h). Otherwise the norms' kernel into h and a temporary x, then the
// GroupedQuantizedMatmul.
void residual_norm_quantized_matmul_gpu(Primitive& prim, const std::vector<array>& inputs,
                                        std::vector<array>& outputs) {
  auto& op = static_cast<ResidualNormQuantizedMatmul&>(prim);
  const Stream& s = prim.stream();
  cudaStream_t cs = stream_of(prim);
  auto aligned = [](const array& a) {
    return a.flags().row_contiguous && reinterpret_cast<uintptr_t>(a.data<void>()) % 16 == 0;
  };
  const array& res = inputs[0];
  std::vector<array> prods(outputs.begin() + 1, outputs.end());
  // MLXCPP_QGEMV_PRENORM=0: the norms' own kernel, then the products (an A/B switch).
  static const bool prologue = !switched_off("MLXCPP_QGEMV_PRENORM");
  bool fused = prologue && aligned(res) && aligned(inputs[1]) && aligned(inputs[2]) &&
               aligned(inputs[3]) && inputs[2].dtype() == float32 && inputs[3].dtype() == float32 &&
               res.shape(-1) % 8 == 0;
  if (fused) {
    allocate_row_contiguous(outputs[0]);
    const quant::QmmPrenorm pre{res.data<void>(),        inputs[1].data<void>(),
                                inputs[2].data<float>(), inputs[3].data<float>(),
                                outputs[0].data<void>(), op.eps()};
    fused =
        reinterpret_cast<uintptr_t>(pre.h) % 16 == 0 &&
        launch_grouped(s, cs, res, inputs, 4, prods, op.group_size(), op.bits(), op.geglu(), &pre);
  }
  if (fused) return;
  std::vector<array> hx{outputs[0], array(res.shape(), res.dtype(), nullptr, std::vector<array>{})};
  fast::ResidualRMSNorm norm(s, op.eps());
  gpu_registry::find(typeid(fast::ResidualRMSNorm))(
      norm, {inputs[0], inputs[1], inputs[2], inputs[3]}, hx);
  std::vector<array> prod_in{hx[1]};
  prod_in.insert(prod_in.end(), inputs.begin() + 4, inputs.end());
  GroupedQuantizedMatmul grouped(s, op.group_size(), op.bits(), op.geglu());
  grouped_quantized_matmul_gpu(grouped, prod_in, prods);
  keep_until_done(s, hx[1]);
}

const Register<Quantize> r_quantize(&quantize_gpu);
const Register<Dequantize> r_dequantize(&dequantize_gpu);
const Register<QuantizedMatmul> r_quantized_matmul(&quantized_matmul_gpu);
const Register<GroupedQuantizedMatmul> r_grouped_quantized_matmul(&grouped_quantized_matmul_gpu);
const Register<ResidualNormQuantizedMatmul> r_residual_norm_quantized_matmul(
    &residual_norm_quantized_matmul_gpu);

}  // namespace
}  // namespace mx::cuda

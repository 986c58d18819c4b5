// Matrix products through cuBLASLt. Operands are passed in place when each
// matrix has a unit stride on one axis (row-major or a transposed view) and
// the batch collapses to one stride per operand (stride 0 for a broadcast
// batch); anything else is copied row-contiguous first. float32 computes in
// full float32 (no TF32) unless MLXCPP_CUDA_TF32=1 is set; 16-bit inputs
// accumulate in float32. Other dtypes (integers, bool, complex64) and the
// K = 0 scaling go to our own kernel (matmul_generic.cu).
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/backend/cuda/cublaslt.h"
#include "mlxcpp/mx/backend/cuda/device.h"
#include "mlxcpp/mx/backend/cuda/gemv.h"
#include "mlxcpp/mx/backend/cuda/matmul_generic.h"
#include "mlxcpp/mx/primitives/matmul.h"

namespace mx::cuda {
namespace {

// A matrix view in cuBLASLt's column-major terms.
struct MatView {
  bool transposed = false;  // op(X) = X^T
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0;
};

// `rows` x `cols` row-major-indexed matrix with strides (sr, sc), seen
// column-major: a row-major matrix is its transpose with ld = sr; a
// column-major one (a transposed view) is itself with ld = sc.
bool view_of(int64_t rows, int64_t cols, int64_t sr, int64_t sc, MatView& v) {
  if ((sc == 1 || cols == 1) && (rows == 1 || sr >= std::max<int64_t>(cols, 1))) {
    v = {false, static_cast<uint64_t>(cols), static_cast<uint64_t>(rows),
         std::max<int64_t>(rows == 1 ? cols : sr, 1)};
    return true;
  }
  if ((sr == 1 || rows == 1) && (cols == 1 || sc >= std::max<int64_t>(rows, 1))) {
    v = {true, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols),
         std::max<int64_t>(cols == 1 ? rows : sc, 1)};
    return true;
  }
  return false;
}

// Largest power of two (<= 256) dividing the address and every byte stride.
uint32_t alignment(const void* p, std::initializer_list<int64_t> byte_strides) {
  uint64_t a = reinterpret_cast<uintptr_t>(p) | 256;
  for (auto s : byte_strides) {
    if (s != 0) a |= static_cast<uint64_t>(s);
  }
  return static_cast<uint32_t>(a & (~a + 1));
}

struct LtDeleter {
  void operator()(cublasLtMatmulDescOpaque_t* d) const { cublaslt().desc_destroy(d); }
  void operator()(cublasLtMatrixLayoutOpaque_t* l) const { cublaslt().layout_destroy(l); }
  void operator()(cublasLtMatmulPreferenceOpaque_t* p) const { cublaslt().preference_destroy(p); }
};

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld,
                                   int batch, int64_t batch_stride) {
  cublasLtMatrixLayout_t l;
  check_cublas(cublaslt().layout_create(&l, type, rows, cols, ld), "creating a matrix layout");
  if (batch > 1) {
    cublaslt().layout_set_attribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch));
    cublaslt().layout_set_attribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride,
                                    sizeof(batch_stride));
  }
  return l;
}

bool use_tf32() {
  static const bool on = [] {
    const char* v = std::getenv("MLXCPP_CUDA_TF32");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}

// A GEMM's cuBLASLt descriptors and chosen algorithm, by everything that
// determines them. Creating them and querying the heuristic costs tens of
// microseconds of host time per call, as long as a decode step's small GEMMs
// take on the device; a step repeats the same few shapes, so they are kept.
struct PlanKey {
  cublasLtHandle_t handle;
  cudaDataType_t type;
  cublasComputeType_t compute;
  cudaDataType_t scale_type;
  cublasOperation_t ta, tb;
  uint64_t dims[12];  // A, B (rows, cols, ld, batch stride), C (rows, cols, batch stride), count
  uint32_t align[3];  // A, B, C/D
  // The fields' bytes, one after the other (no padding): the cache's key.
  std::string bytes() const {
    std::string k;
    auto put = [&](const auto& v) { k.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
    put(handle);
    put(type);
    put(compute);
    put(scale_type);
    put(ta);
    put(tb);
    for (auto d : dims) put(d);
    for (auto a : align) put(a);
    return k;
  }
};

struct Plan {
  std::unique_ptr<cublasLtMatmulDescOpaque_t, LtDeleter> desc;
  std::unique_ptr<cublasLtMatrixLayoutOpaque_t, LtDeleter> la, lb, lc;
  // The heuristic's algorithms, best guess first.
  std::vector<cublasLtMatmulAlgo_t> candidates;
  // The one used: the heuristic's first until timed (large GEMMs are, on their first call).
  mutable std::mutex mu;
  mutable cublasLtMatmulAlgo_t algo{};
  mutable bool timed = false;
};

// The heuristic's first choice for a shape need not be its fastest candidate, so large GEMMs
// time the candidates once and keep the fastest (Gemma 3 4B's 2048-token prefill on an H200:
// 1.2% faster overall). MLXCPP_GEMM_TUNE=0 keeps the heuristic's first choice.
constexpr int kCandidates = 8;
constexpr double kTuneMinFlops = 2e9;  // a few microseconds on an H100: tuning would not pay
// Nor for products of fewer rows (decode steps, a server's prefill of a few short prompts): the
// trials wait for the stream, and a server meets a new row count (batch size, prompt lengths)
// at nearly every joining round: each one's LM head and prefill products were timed on the
// spot, stalling its pipeline 10-70 ms (tools/gpu/timeline.py, bench/RESULTS.md), for a
// choice the heuristic's first candidate makes about as well at these sizes.
constexpr int64_t kTuneMinRows = 1024;
constexpr int kMaxTunedPlans = 512;  // bounds the one-time cost when shapes keep changing

bool tuning_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MLXCPP_GEMM_TUNE");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

std::shared_ptr<const Plan> find_plan(const PlanKey& k, size_t workspace_size, const char* op,
                                      Dtype dtype, int64_t M, int64_t N, int64_t K) {
  // Leaked on purpose: plans may be used by work still queued at exit.
  static auto* mu = new std::mutex();
  static auto* plans = new std::map<std::string, std::shared_ptr<const Plan>>();
  const std::string key = k.bytes();
  std::lock_guard<std::mutex> lk(*mu);
  auto it = plans->find(key);
  if (it != plans->end()) return it->second;
  // Bounded: prefill chunks of many lengths would otherwise grow it forever
  // (callers hold their plan by a shared pointer).
  if (plans->size() >= 4096) plans->clear();
  auto plan = std::make_shared<Plan>();
  {
    cublasLtMatmulDesc_t d;
    check_cublas(cublaslt().desc_create(&d, k.compute, k.scale_type), "creating a matmul");
    plan->desc.reset(d);
  }
  cublaslt().desc_set_attribute(plan->desc.get(), CUBLASLT_MATMUL_DESC_TRANSA, &k.ta, sizeof(k.ta));
  cublaslt().desc_set_attribute(plan->desc.get(), CUBLASLT_MATMUL_DESC_TRANSB, &k.tb, sizeof(k.tb));
  const int count = static_cast<int>(k.dims[11]);
  plan->la.reset(make_layout(k.type, k.dims[0], k.dims[1], static_cast<int64_t>(k.dims[2]), count,
                             static_cast<int64_t>(k.dims[3])));
  plan->lb.reset(make_layout(k.type, k.dims[4], k.dims[5], static_cast<int64_t>(k.dims[6]), count,
                             static_cast<int64_t>(k.dims[7])));
  plan->lc.reset(make_layout(k.type, k.dims[8], k.dims[9], static_cast<int64_t>(k.dims[8]), count,
                             static_cast<int64_t>(k.dims[10])));
  std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, LtDeleter> pref;
  {
    cublasLtMatmulPreference_t pr;
    check_cublas(cublaslt().preference_create(&pr), "creating a preference");
    pref.reset(pr);
  }
  cublaslt().preference_set_attribute(pref.get(), CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                      &workspace_size, sizeof(workspace_size));
  cublaslt().preference_set_attribute(pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                      &k.align[0], sizeof(k.align[0]));
  cublaslt().preference_set_attribute(pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                      &k.align[1], sizeof(k.align[1]));
  cublaslt().preference_set_attribute(pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                      &k.align[2], sizeof(k.align[2]));
  cublaslt().preference_set_attribute(pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                      &k.align[2], sizeof(k.align[2]));
  cublasLtMatmulHeuristicResult_t heur[kCandidates] = {};
  int found = 0;
  check_cublas(cublaslt().algo_get_heuristic(k.handle, plan->desc.get(), plan->la.get(),
                                             plan->lb.get(), plan->lc.get(), plan->lc.get(),
                                             pref.get(), kCandidates, heur, &found),
               "choosing a GEMM algorithm");
  for (int i = 0; i < found; ++i) {
    if (heur[i].state == CUBLAS_STATUS_SUCCESS) plan->candidates.push_back(heur[i].algo);
  }
  if (plan->candidates.empty()) {
    throw std::runtime_error(std::string("[") + op + "] cuBLASLt has no algorithm for " +
                             dtype_name(dtype) + " M=" + std::to_string(M) +
                             " N=" + std::to_string(N) + " K=" + std::to_string(K));
  }
  plan->algo = plan->candidates.front();
  plans->emplace(key, plan);
  return plan;
}

// The plan's algorithm, timed among its candidates on the first call (two runs each after one
// that warms it up; a candidate that fails is skipped). Blocks the calling thread until the
// trials have run, once per plan.
cublasLtMatmulAlgo_t tune(const Plan& plan, const StreamResources& res, const void* alpha,
                          const void* beta, const char* a, const char* b, char* out) {
  static std::atomic<int> tuned_plans{0};
  std::lock_guard<std::mutex> lk(plan.mu);
  if (plan.timed || tuned_plans.load() >= kMaxTunedPlans) return plan.algo;
  plan.timed = true;
  ++tuned_plans;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
    cudaGetLastError();
    if (e0) cudaEventDestroy(e0);
    return plan.algo;
  }
  auto run = [&](const cublasLtMatmulAlgo_t& algo) {
    return cublaslt().matmul(res.blas, plan.desc.get(), alpha, b, plan.la.get(), a, plan.lb.get(),
                             beta, out, plan.lc.get(), out, plan.lc.get(), &algo, res.workspace,
                             res.workspace_size, res.stream);
  };
  float best = -1;
  for (const auto& c : plan.candidates) {
    if (run(c) != CUBLAS_STATUS_SUCCESS) continue;
    cudaEventRecord(e0, res.stream);
    bool ok = run(c) == CUBLAS_STATUS_SUCCESS && run(c) == CUBLAS_STATUS_SUCCESS;
    cudaEventRecord(e1, res.stream);
    float ms = 0;
    ok = ok && cudaEventSynchronize(e1) == cudaSuccess &&
         cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess;
    if (ok && (best < 0 || ms < best)) {
      best = ms;
      plan.algo = c;
    }
  }
  cudaGetLastError();
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return plan.algo;
}

// out (batch..., M, N) = alpha * a @ b + beta * out, batch dims broadcast.
void gemm(Primitive& p, array a, array b, array& out, float alpha, float beta) {
  const Stream& s = p.stream();
  const int nd = static_cast<int>(out.ndim());
  const int64_t M = out.shape(-2), N = out.shape(-1), K = a.shape(-1);
  cudaDataType_t type;
  cublasComputeType_t compute;
  cudaDataType_t scale_type = CUDA_R_32F;
  switch (out.dtype().val) {
    case Dtype::Val::float32:
      type = CUDA_R_32F;
      compute = use_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      break;
    case Dtype::Val::float16:
      type = CUDA_R_16F;
      compute = CUBLAS_COMPUTE_32F;
      break;
    case Dtype::Val::bfloat16:
      type = CUDA_R_16BF;
      compute = CUBLAS_COMPUTE_32F;
      break;
    case Dtype::Val::float64:
      type = CUDA_R_64F;
      compute = CUBLAS_COMPUTE_64F;
      scale_type = CUDA_R_64F;
      break;
    default:
      // Integers, bool and complex64: our own kernel.
      matmul_generic(a, b, out, alpha, beta, s);
      return;
  }
  if (a.dtype() != out.dtype() || b.dtype() != out.dtype()) {
    throw std::invalid_argument(std::string("[") + p.name() + "] operands " +
                                dtype_name(a.dtype()) + " and " + dtype_name(b.dtype()) +
                                " differ from the output dtype " + dtype_name(out.dtype()));
  }
  if (out.size() == 0) return;
  if (K == 0) {
    if (beta == 0.0f) {
      check(cudaMemsetAsync(out.data<char>(), 0, out.nbytes(), resources(s).stream), "matmul");
      return;
    }
    if (beta == 1.0f) return;
    matmul_generic(a, b, out, alpha, beta, s);  // out = beta * out
    return;
  }

  // Batch dims of the output with each operand's strides (0 where broadcast).
  auto batch_strides = [&](const array& x) {
    Strides st(nd - 2, 0);
    const int off = nd - static_cast<int>(x.ndim());
    for (int d = 0; d < static_cast<int>(x.ndim()) - 2; ++d) {
      st[d + off] = x.shape(d) == 1 ? 0 : x.strides()[d];
    }
    return st;
  };
  Shape batch(out.shape().begin(), out.shape().end() - 2);
  Strides out_bs(nd - 2);
  for (int d = nd - 3; d >= 0; --d) {
    out_bs[d] = (d == nd - 3 ? M * N : out_bs[d + 1] * batch[d + 1]);
  }
  MatView va, vb;
  auto fits = [&](const array& x, int64_t r, int64_t c, MatView& v) {
    return view_of(r, c, x.strides()[x.ndim() - 2], x.strides()[x.ndim() - 1], v);
  };
  if (!fits(a, M, K, va)) {
    a = ensure_row_contiguous(a, s);
    fits(a, M, K, va);
  }
  if (!fits(b, K, N, vb)) {
    b = ensure_row_contiguous(b, s);
    fits(b, K, N, vb);
  }
  auto [bshape, bstr] =
      cpu::collapse_contiguous_dims(batch, {batch_strides(a), batch_strides(b), out_bs});
  // The innermost collapsed batch dim goes to cuBLASLt; outer ones loop here.
  const int inner = static_cast<int>(bshape.size()) - 1;
  int count = bshape[inner];
  int64_t sa = bstr[0][inner], sb = bstr[1][inner], so = bstr[2][inner];
  int64_t M_all = M;  // rows of one product: M, or every batch's M rows folded together
  // A weight shared by every batch (x [B, T, K] @ w^T: a batched decode step or
  // prefill) is one GEMM of B * T rows when a's batches follow each other with
  // uniformly spaced rows. As a strided batch, cuBLASLt would run B products of
  // T rows that each stream the whole weight again: a 64-row decode step read
  // the weights 64 times.
  if (bshape.size() == 1 && count > 1 && sb == 0 && !va.transposed && so == M * N) {
    const int64_t row_stride = M == 1 ? sa : va.ld;
    if (sa == M * row_stride && row_stride >= K) {
      M_all = M * count;
      va.cols = static_cast<uint64_t>(M_all);
      va.ld = row_stride;
      count = 1;
      sa = sb = so = 0;
    }
  }

  const size_t isz = out.itemsize();
  const int64_t isz64 = static_cast<int64_t>(isz);
  auto& res = gemm_resources(s);
  // Row-major C = A B is column-major C^T = B^T A^T: cuBLASLt's A is our b.
  PlanKey key{};
  key.handle = res.blas;
  key.type = type;
  key.compute = compute;
  key.scale_type = scale_type;
  key.ta = vb.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  key.tb = va.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const uint64_t dims[12] = {vb.rows,
                             vb.cols,
                             static_cast<uint64_t>(vb.ld),
                             static_cast<uint64_t>(sb),
                             va.rows,
                             va.cols,
                             static_cast<uint64_t>(va.ld),
                             static_cast<uint64_t>(sa),
                             static_cast<uint64_t>(N),
                             static_cast<uint64_t>(M_all),
                             static_cast<uint64_t>(so),
                             static_cast<uint64_t>(count)};
  for (int i = 0; i < 12; ++i) key.dims[i] = dims[i];
  key.align[0] = alignment(b.data<char>(), {vb.ld * isz64, sb * isz64});
  key.align[1] = alignment(a.data<char>(), {va.ld * isz64, sa * isz64});
  key.align[2] = alignment(out.data<char>(), {N * isz64, so * isz64});
  const std::shared_ptr<const Plan> plan_ptr =
      find_plan(key, res.workspace_size, p.name(), out.dtype(), M_all, N, K);
  const Plan& plan = *plan_ptr;

  double alpha_d = alpha, beta_d = beta;
  cublasLtMatmulAlgo_t algo;
  {
    std::lock_guard<std::mutex> lk(plan.mu);
    algo = plan.algo;
  }
  const void* alpha_p = scale_type == CUDA_R_64F ? static_cast<const void*>(&alpha_d) : &alpha;
  const void* beta_p = scale_type == CUDA_R_64F ? static_cast<const void*>(&beta_d) : &beta;
  // Outer batch dims (those that did not collapse into one stride).
  Shape outer(bshape.begin(), bshape.end() - 1);
  int64_t n_outer = 1;
  for (auto d : outer) n_outer *= d;
  if (n_outer == 1 && beta == 0.0f && plan.candidates.size() > 1 && M_all * count >= kTuneMinRows &&
      2.0 * static_cast<double>(M) * N * K * count >= kTuneMinFlops && tuning_enabled()) {
    // The product writes only `out` (beta = 0), so the trial runs leave no trace.
    algo = tune(plan, res, alpha_p, beta_p, a.data<char>(), b.data<char>(), out.data<char>());
  }
  for (int64_t i = 0; i < n_outer; ++i) {
    int64_t oa = 0, ob = 0, oo = 0, rem = i;
    for (int d = static_cast<int>(outer.size()) - 1; d >= 0; --d) {
      int64_t idx = rem % outer[d];
      rem /= outer[d];
      oa += idx * bstr[0][d];
      ob += idx * bstr[1][d];
      oo += idx * bstr[2][d];
    }
    char* o = out.data<char>() + oo * isz64;
    check_cublas(cublaslt().matmul(res.blas, plan.desc.get(), alpha_p, b.data<char>() + ob * isz64,
                                   plan.la.get(), a.data<char>() + oa * isz64, plan.lb.get(),
                                   beta_p, o, plan.lc.get(), o, plan.lc.get(), &algo, res.workspace,
                                   res.workspace_size, res.stream),
                 p.name());
  }
}

// x @ w^T for one or two rows of x with w a row-major weight matrix of many
// rows (a decode step's LM head): our few-row kernel (gemv.h), which streams w
// at the memory bandwidth where cuBLASLt's one-row algorithm does not quite
// (Gemma 3's 262208 x 2560 head on an H100: 3.14 against 2.88 TB/s). For
// smaller matrices cuBLASLt is as fast or faster, and it stays their path.
constexpr int64_t kFewRowsMinN = 16384;

bool few_rows_product(Primitive& p, const array& a, const array& b, array& out) {
  const Dtype t = out.dtype();
  if (!(t == float16 || t == bfloat16 || t == float32)) return false;
  if (a.dtype() != t || b.dtype() != t) return false;
  if (b.ndim() != 2 || a.ndim() < 2 || out.ndim() != a.ndim()) return false;
  const int64_t K = a.shape(-1), N = b.shape(1);
  if (K < 1 || N < 1 || K > INT32_MAX) return false;
  const int64_t rows = static_cast<int64_t>(a.size()) / K;
  if (rows < 1 || rows > kGemvMaxRows || N < kFewRowsMinN || !a.flags().row_contiguous) {
    return false;
  }
  // MLXCPP_FEW_ROWS_LT_N=N: products of N or more columns go to cuBLASLt (for comparison).
  static const int64_t lt_n = [] {
    const char* e = std::getenv("MLXCPP_FEW_ROWS_LT_N");
    return e ? std::atoll(e) : int64_t{0};
  }();
  if (lt_n > 0 && N >= lt_n) return false;
  // b (K, N) is w (N, K) transposed: unit stride along K, rows of w apart.
  if (K > 1 && b.strides()[0] != 1) return false;
  const int64_t ldw = N == 1 ? K : b.strides()[1];
  if (ldw < K) return false;
  const GemvMatrix m{b.data<char>(), N, ldw, out.data<char>(), N};
  gemv(t, a.data<char>(), static_cast<int>(rows), static_cast<int>(K), &m, 1,
       resources(p.stream()).stream);
  return true;
}

void matmul_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  allocate_row_contiguous(outputs[0]);
  if (few_rows_product(p, inputs[0], inputs[1], outputs[0])) return;
  gemm(p, inputs[0], inputs[1], outputs[0], 1.0f, 0.0f);
}

void addmm_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& op = static_cast<AddMM&>(p);
  array& out = outputs[0];
  allocate_row_contiguous(out);
  copy_into(inputs[2], out, p.stream());
  gemm(p, inputs[0], inputs[1], out, op.alpha(), op.beta());
}

const Register<Matmul> r_matmul(&matmul_gpu);
const Register<AddMM> r_addmm(&addmm_gpu);

}  // namespace

void cublaslt_product(Primitive& p, const array& a, const array& b, array& out) {
  gemm(p, a, b, out, 1.0f, 0.0f);
}

}  // namespace mx::cuda

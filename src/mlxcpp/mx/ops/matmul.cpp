// Matrix products (matmul, addmm, outer, inner, tensordot) and the rules of
// their primitives. einsum lives in einsum.cpp and reduces to these.
#include <numeric>
#include <sstream>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/matmul.h"

namespace mx {

namespace {

// The operands of a product as the primitives see them: at least 2-D, one
// dtype, inner dims checked; plus the output shapes with and without the dims
// that 1-D operands add.
struct Product {
  array a, b;
  Shape shape;        // (batch..., M, N)
  Shape final_shape;  // without the dims added for 1-D operands
};

Product prepare_product(const char* op, const array& a, const array& b, S s) {
  if (a.ndim() == 0 || b.ndim() == 0) {
    throw std::invalid_argument(std::string("[") + op +
                                "] needs arrays with at least one dimension, got shapes " +
                                shape_str(a.shape()) + " and " + shape_str(b.shape()));
  }
  Dtype dtype = promote_types(a.dtype(), b.dtype());
  array x = a.dtype() == dtype ? a : astype(a, dtype, s);
  array y = b.dtype() == dtype ? b : astype(b, dtype, s);
  if (x.ndim() == 1) x = reshape(x, {1, x.shape(0)}, s);
  if (y.ndim() == 1) y = reshape(y, {y.shape(0), 1}, s);
  if (x.shape(-1) != y.shape(-2)) {
    throw std::invalid_argument(std::string("[") + op + "] the last dimension of a (shape " +
                                shape_str(a.shape()) + ") must equal the " +
                                (b.ndim() == 1 ? "only" : "second-to-last") +
                                " dimension of b (shape " + shape_str(b.shape()) + ")");
  }
  Shape ba(x.shape().begin(), x.shape().end() - 2), bb(y.shape().begin(), y.shape().end() - 2);
  Shape batch;
  try {
    batch = broadcast_shapes(ba, bb);
  } catch (const std::invalid_argument&) {
    throw std::invalid_argument(std::string("[") + op + "] the batch dimensions of shapes " +
                                shape_str(a.shape()) + " and " + shape_str(b.shape()) +
                                " cannot be broadcast together");
  }
  Shape shape = batch;
  shape.push_back(x.shape(-2));
  shape.push_back(y.shape(-1));
  Shape final_shape = batch;
  if (a.ndim() > 1) final_shape.push_back(x.shape(-2));
  if (b.ndim() > 1) final_shape.push_back(y.shape(-1));
  return {std::move(x), std::move(y), std::move(shape), std::move(final_shape)};
}

// Sums `x` down to `shape` (the inverse of broadcasting it there).
array sum_to_shape(const array& x, const Shape& shape, S s) {
  if (x.shape() == shape) return x;
  int extra = static_cast<int>(x.ndim() - shape.size());
  std::vector<int> lead(extra);
  std::iota(lead.begin(), lead.end(), 0);
  array r = extra > 0 ? sum(x, lead, false, s) : x;
  std::vector<int> ones;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1 && r.shape(static_cast<int>(i)) != 1) ones.push_back(static_cast<int>(i));
  }
  return ones.empty() ? r : sum(r, ones, true, s);
}

array swap_last(const array& x, S s) { return swapaxes(x, -1, -2, s); }

// Moves each batched input's vmap axis to the front and pads its batch rank
// so that the vmap axis lines up with the output's first dim.
std::vector<array> align_vmapped(const std::vector<array>& inputs, const std::vector<int>& axes,
                                 S s) {
  int rank = 0;  // widest unbatched rank
  for (size_t i = 0; i < inputs.size(); ++i) {
    rank = std::max(rank, static_cast<int>(inputs[i].ndim()) - (axes[i] >= 0 ? 1 : 0));
  }
  std::vector<array> out;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (axes[i] < 0) {
      out.push_back(inputs[i]);
      continue;
    }
    array x = moveaxis(inputs[i], axes[i], 0, s);
    int missing = rank - (static_cast<int>(x.ndim()) - 1);
    if (missing > 0) {
      Shape sh = x.shape();
      sh.insert(sh.begin() + 1, missing, 1);
      x = reshape(x, sh, s);
    }
    out.push_back(x);
  }
  return out;
}

}  // namespace

array matmul(const array& a, const array& b, S s) {
  Product p = prepare_product("matmul", a, b, s);
  Dtype dtype = p.a.dtype();
  array out(p.shape, dtype, std::make_shared<Matmul>(to_stream(s)), {p.a, p.b});
  return p.final_shape == p.shape ? out : reshape(out, p.final_shape, s);
}

array addmm(array c, array a, array b, const float& alpha, const float& beta, S s) {
  Product p = prepare_product("addmm", a, b, s);
  Dtype dtype = promote_types(p.a.dtype(), c.dtype());
  if (!is_inexact(dtype)) {
    throw std::invalid_argument("[addmm] needs floating-point or complex arrays, got " +
                                dtype_name(dtype));
  }
  if (p.a.dtype() != dtype) {
    p.a = astype(p.a, dtype, s);
    p.b = astype(p.b, dtype, s);
  }
  if (c.dtype() != dtype) c = astype(c, dtype, s);
  Shape full;
  try {
    full = broadcast_shapes(c.shape(), p.final_shape);
  } catch (const std::invalid_argument&) {
  }
  if (full != p.final_shape) {
    throw std::invalid_argument("[addmm] c of shape " + shape_str(c.shape()) +
                                " cannot be broadcast to the shape " + shape_str(p.final_shape) +
                                " of a @ b (shapes " + shape_str(a.shape()) + " and " +
                                shape_str(b.shape()) + ")");
  }
  c = broadcast_to(c, p.final_shape, s);
  if (p.final_shape != p.shape) c = reshape(c, p.shape, s);
  array out(p.shape, dtype, std::make_shared<AddMM>(to_stream(s), alpha, beta), {p.a, p.b, c});
  return p.final_shape == p.shape ? out : reshape(out, p.final_shape, s);
}

array outer(const array& a, const array& b, S s) {
  return multiply(reshape(a, {-1, 1}, s), flatten(b, s), s);
}

array inner(const array& a, const array& b, S s) {
  if (a.ndim() == 0 || b.ndim() == 0) return multiply(a, b, s);
  if (a.shape(-1) != b.shape(-1)) {
    throw std::invalid_argument("[inner] the last dimensions of shapes " + shape_str(a.shape()) +
                                " and " + shape_str(b.shape()) + " must match");
  }
  return tensordot(a, b, {-1}, {-1}, s);
}

array tensordot(const array& a, const array& b, int axis, S s) {
  int na = static_cast<int>(a.ndim()), nb = static_cast<int>(b.ndim());
  if (axis < 0 || axis > na || axis > nb) {
    throw std::invalid_argument("[tensordot] cannot contract " + std::to_string(axis) +
                                " axes of shapes " + shape_str(a.shape()) + " and " +
                                shape_str(b.shape()));
  }
  std::vector<int> xa, xb;
  for (int i = 0; i < axis; ++i) {
    xa.push_back(na - axis + i);
    xb.push_back(i);
  }
  return tensordot(a, b, xa, xb, s);
}

array tensordot(const array& a, const array& b, const std::vector<int>& axes_a,
                const std::vector<int>& axes_b, S s) {
  if (axes_a.size() != axes_b.size()) {
    throw std::invalid_argument("[tensordot] got " + std::to_string(axes_a.size()) +
                                " axes for a but " + std::to_string(axes_b.size()) + " for b");
  }
  int na = static_cast<int>(a.ndim()), nb = static_cast<int>(b.ndim());
  std::vector<bool> used_a(na, false), used_b(nb, false);
  std::vector<int> ca, cb;
  int64_t csize = 1;
  for (size_t i = 0; i < axes_a.size(); ++i) {
    int x = normalize_axis(axes_a[i], na, "tensordot");
    int y = normalize_axis(axes_b[i], nb, "tensordot");
    if (used_a[x] || used_b[y]) throw std::invalid_argument("[tensordot] repeated axis");
    if (a.shape(x) != b.shape(y)) {
      throw std::invalid_argument("[tensordot] axis " + std::to_string(axes_a[i]) + " of shape " +
                                  shape_str(a.shape()) + " and axis " + std::to_string(axes_b[i]) +
                                  " of shape " + shape_str(b.shape()) + " differ in size");
    }
    used_a[x] = used_b[y] = true;
    ca.push_back(x);
    cb.push_back(y);
    csize *= a.shape(x);
  }
  std::vector<int> pa, pb;
  Shape out_shape;
  int64_t fa = 1, fb = 1;
  for (int i = 0; i < na; ++i) {
    if (!used_a[i]) {
      pa.push_back(i);
      out_shape.push_back(a.shape(i));
      fa *= a.shape(i);
    }
  }
  pa.insert(pa.end(), ca.begin(), ca.end());
  pb = cb;
  for (int i = 0; i < nb; ++i) {
    if (!used_b[i]) {
      pb.push_back(i);
      out_shape.push_back(b.shape(i));
      fb *= b.shape(i);
    }
  }
  array x = reshape(transpose(a, pa, s), {static_cast<int>(fa), static_cast<int>(csize)}, s);
  array y = reshape(transpose(b, pb, s), {static_cast<int>(csize), static_cast<int>(fb)}, s);
  return reshape(matmul(x, y, s), out_shape, s);
}

// ---------------------------------------------------------------- primitive rules

bool Matmul::is_equivalent(const Primitive& other) const {
  return dynamic_cast<const Matmul*>(&other) != nullptr;
}

std::vector<Shape> Matmul::output_shapes(const std::vector<array>& inputs) {
  const array& a = inputs[0];
  const array& b = inputs[1];
  Shape shape = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                 Shape(b.shape().begin(), b.shape().end() - 2));
  shape.push_back(a.shape(-2));
  shape.push_back(b.shape(-1));
  return {shape};
}

std::vector<array> Matmul::vjp(const std::vector<array>& primals,
                               const std::vector<array>& cotangents,
                               const std::vector<int>& argnums, const std::vector<array>&) {
  const array& cot = cotangents[0];
  std::vector<array> out;
  for (int arg : argnums) {
    if (arg == 0) {
      out.push_back(sum_to_shape(matmul(cot, swap_last(primals[1], stream()), stream()),
                                 primals[0].shape(), stream()));
    } else {
      out.push_back(sum_to_shape(matmul(swap_last(primals[0], stream()), cot, stream()),
                                 primals[1].shape(), stream()));
    }
  }
  return out;
}

std::vector<array> Matmul::jvp(const std::vector<array>& primals,
                               const std::vector<array>& tangents,
                               const std::vector<int>& argnums) {
  std::optional<array> out;
  for (size_t i = 0; i < argnums.size(); ++i) {
    array term = argnums[i] == 0 ? matmul(tangents[i], primals[1], stream())
                                 : matmul(primals[0], tangents[i], stream());
    out = out ? add(*out, term, stream()) : term;
  }
  return {*out};
}

std::pair<std::vector<array>, std::vector<int>> Matmul::vmap(const std::vector<array>& inputs,
                                                             const std::vector<int>& axes) {
  auto in = align_vmapped(inputs, axes, stream());
  return {{matmul(in[0], in[1], stream())}, {0}};
}

bool AddMM::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const AddMM*>(&other);
  return o && o->alpha_ == alpha_ && o->beta_ == beta_;
}

std::vector<array> AddMM::vjp(const std::vector<array>& primals,
                              const std::vector<array>& cotangents, const std::vector<int>& argnums,
                              const std::vector<array>&) {
  const array& cot = cotangents[0];
  Dtype dt = cot.dtype();
  std::vector<array> out;
  for (int arg : argnums) {
    if (arg == 0) {
      array g = matmul(cot, swap_last(primals[1], stream()), stream());
      out.push_back(
          multiply(array(alpha_, dt), sum_to_shape(g, primals[0].shape(), stream()), stream()));
    } else if (arg == 1) {
      array g = matmul(swap_last(primals[0], stream()), cot, stream());
      out.push_back(
          multiply(array(alpha_, dt), sum_to_shape(g, primals[1].shape(), stream()), stream()));
    } else {
      out.push_back(multiply(array(beta_, dt), cot, stream()));
    }
  }
  return out;
}

std::vector<array> AddMM::jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                              const std::vector<int>& argnums) {
  Dtype dt = primals[2].dtype();
  std::optional<array> out;
  for (size_t i = 0; i < argnums.size(); ++i) {
    array term =
        argnums[i] == 0
            ? multiply(array(alpha_, dt), matmul(tangents[i], primals[1], stream()), stream())
        : argnums[i] == 1
            ? multiply(array(alpha_, dt), matmul(primals[0], tangents[i], stream()), stream())
            : multiply(array(beta_, dt), tangents[i], stream());
    out = out ? add(*out, term, stream()) : term;
  }
  return {*out};
}

std::pair<std::vector<array>, std::vector<int>> AddMM::vmap(const std::vector<array>& inputs,
                                                            const std::vector<int>& axes) {
  // c may be batched while a and b are not, so the product and c combine
  // through broadcasting rather than through another AddMM.
  auto ab = align_vmapped({inputs[0], inputs[1]}, {axes[0], axes[1]}, stream());
  array prod = matmul(ab[0], ab[1], stream());
  if (axes[0] < 0 && axes[1] < 0) prod = expand_dims(prod, 0, stream());
  array c = axes[2] >= 0 ? moveaxis(inputs[2], axes[2], 0, stream())
                         : expand_dims(inputs[2], 0, stream());
  Dtype dt = c.dtype();
  return {{add(multiply(array(alpha_, dt), prod, stream()), multiply(array(beta_, dt), c, stream()),
               stream())},
          {0}};
}

}  // namespace mx

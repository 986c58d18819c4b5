#include "mlxcpp/nn/quantized.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/quantized.h"

namespace mx::nn {

namespace {

std::string spec_str(const QuantizationSpec& s) {
  return s.mode + " (group size " + std::to_string(s.group_size) + ", " + std::to_string(s.bits) +
         " bits)";
}

// Checks the spec and that `dims` (the quantized axis) splits into whole groups.
void check_spec(const char* layer, const QuantizationSpec& spec, int dims) {
  if (spec.bits <= 0 || spec.group_size <= 0) {
    throw std::invalid_argument(std::string(layer) + ": invalid quantization " + spec_str(spec));
  }
  if (dims % spec.group_size != 0) {
    throw std::invalid_argument(std::string(layer) + ": input dimension " + std::to_string(dims) +
                                " is not a multiple of the group size " +
                                std::to_string(spec.group_size));
  }
  if ((dims * spec.bits) % 32 != 0) {
    throw std::invalid_argument(std::string(layer) + ": input dimension " + std::to_string(dims) +
                                " at " + std::to_string(spec.bits) +
                                " bits does not fill whole uint32 words");
  }
}

bool is_affine(const QuantizationSpec& s) { return s.mode == "affine"; }

Dtype scales_dtype(const QuantizationSpec& s, Dtype dtype) { return is_affine(s) ? dtype : uint8; }

}  // namespace

QuantizationSpec quantization_defaults(const std::string& mode, std::optional<int> group_size,
                                       std::optional<int> bits) {
  QuantizationSpec s;
  s.mode = mode;
  if (mode == "affine") {
    s.group_size = 64;
    s.bits = 4;
  } else if (mode == "mxfp4") {
    s.group_size = 32;
    s.bits = 4;
  } else if (mode == "nvfp4") {
    s.group_size = 16;
    s.bits = 4;
  } else if (mode == "mxfp8") {
    s.group_size = 32;
    s.bits = 8;
  } else {
    throw std::invalid_argument("quantization mode '" + mode +
                                "' is not one of affine, mxfp4, nvfp4, mxfp8");
  }
  if (group_size) s.group_size = *group_size;
  if (bits) s.bits = *bits;
  return s;
}

// ------------------------------------------------------------------ QuantizedLinear

QuantizedLinear::QuantizedLinear(const QuantizationSpec& spec, int input_dims)
    : spec_(spec), input_dims_(input_dims) {}

QuantizedLinear::QuantizedLinear(int input_dims, int output_dims, bool bias,
                                 const QuantizationSpec& spec, Dtype dtype)
    : spec_(spec), input_dims_(input_dims) {
  check_spec("QuantizedLinear", spec, input_dims);
  if (output_dims <= 0) {
    throw std::invalid_argument("QuantizedLinear: output_dims must be positive, got " +
                                std::to_string(output_dims));
  }
  const int groups = input_dims / spec.group_size;
  register_parameter("weight", zeros({output_dims, input_dims * spec.bits / 32}, uint32));
  register_parameter("scales", zeros({output_dims, groups}, scales_dtype(spec, dtype)));
  if (is_affine(spec)) register_parameter("biases", zeros({output_dims, groups}, dtype));
  if (bias) register_parameter("bias", zeros({output_dims}, dtype));
  // MLX freezes the quantized parameters: they are not trainable (QLoRA trains adapters).
  freeze({"weight", "scales"});
  if (is_affine(spec)) freeze({"biases"});
}

std::shared_ptr<QuantizedLinear> QuantizedLinear::from_linear(const Linear& linear,
                                                              const QuantizationSpec& spec) {
  check_spec("QuantizedLinear", spec, linear.input_dims());
  auto q = std::shared_ptr<QuantizedLinear>(new QuantizedLinear(spec, linear.input_dims()));
  auto parts = mx::quantize(linear.weight(), spec.group_size, spec.bits, spec.mode);
  q->register_parameter("weight", parts[0]);
  q->register_parameter("scales", parts[1]);
  if (parts.size() > 2) q->register_parameter("biases", parts[2]);
  if (linear.has_bias()) q->register_parameter("bias", linear.param("bias"));
  q->freeze({"weight", "scales"});
  if (parts.size() > 2) q->freeze({"biases"});
  return q;
}

std::optional<array> QuantizedLinear::biases() const {
  if (has_param("biases")) return param("biases");
  return std::nullopt;
}

array QuantizedLinear::operator()(const array& x) const {
  if (x.ndim() == 0 || x.shape(-1) != input_dims_) {
    throw std::invalid_argument(
        "QuantizedLinear: input's last dimension " + std::to_string(x.ndim() ? x.shape(-1) : 0) +
        " does not match the layer's input dimension " + std::to_string(input_dims_));
  }
  array y = quantized_matmul(x, param("weight"), param("scales"), biases(), true, spec_.group_size,
                             spec_.bits, spec_.mode);
  if (has_bias()) y = add(y, param("bias"));
  return y;
}

std::shared_ptr<Linear> QuantizedLinear::to_linear() const {
  array w = dequantize(param("weight"), param("scales"), biases(), spec_.group_size, spec_.bits,
                       spec_.mode);
  auto linear = std::make_shared<Linear>(input_dims_, output_dims(), has_bias(), w.dtype());
  ParamMap p{{"weight", w}};
  if (has_bias()) p.insert_or_assign("bias", param("bias"));
  linear->update(p);
  return linear;
}

// --------------------------------------------------------------- QuantizedEmbedding

QuantizedEmbedding::QuantizedEmbedding(const QuantizationSpec& spec, int dims)
    : spec_(spec), dims_(dims) {}

QuantizedEmbedding::QuantizedEmbedding(int num_embeddings, int dims, const QuantizationSpec& spec,
                                       Dtype dtype)
    : spec_(spec), dims_(dims) {
  check_spec("QuantizedEmbedding", spec, dims);
  if (num_embeddings <= 0) {
    throw std::invalid_argument("QuantizedEmbedding: num_embeddings must be positive, got " +
                                std::to_string(num_embeddings));
  }
  const int groups = dims / spec.group_size;
  register_parameter("weight", zeros({num_embeddings, dims * spec.bits / 32}, uint32));
  register_parameter("scales", zeros({num_embeddings, groups}, scales_dtype(spec, dtype)));
  if (is_affine(spec)) register_parameter("biases", zeros({num_embeddings, groups}, dtype));
  freeze();
}

std::shared_ptr<QuantizedEmbedding> QuantizedEmbedding::from_embedding(
    const Embedding& embedding, const QuantizationSpec& spec) {
  check_spec("QuantizedEmbedding", spec, embedding.dims());
  auto q = std::shared_ptr<QuantizedEmbedding>(new QuantizedEmbedding(spec, embedding.dims()));
  auto parts = mx::quantize(embedding.weight(), spec.group_size, spec.bits, spec.mode);
  q->register_parameter("weight", parts[0]);
  q->register_parameter("scales", parts[1]);
  if (parts.size() > 2) q->register_parameter("biases", parts[2]);
  q->freeze();
  return q;
}

std::optional<array> QuantizedEmbedding::biases() const {
  if (has_param("biases")) return param("biases");
  return std::nullopt;
}

array QuantizedEmbedding::operator()(const array& indices) const {
  if (!issubdtype(indices.dtype(), Dtype::Category::integer)) {
    throw std::invalid_argument("QuantizedEmbedding: indices must be integers, got " +
                                dtype_name(indices.dtype()));
  }
  // Gather the packed rows and their groups first, so only the looked-up rows are dequantized.
  array flat = reshape(indices, {-1});
  auto rows = [&](const array& a) { return take(a, flat, 0); };
  std::optional<array> b;
  if (auto bb = biases()) b = rows(*bb);
  array out = dequantize(rows(param("weight")), rows(param("scales")), b, spec_.group_size,
                         spec_.bits, spec_.mode);
  Shape shape = indices.shape();
  shape.push_back(dims_);
  return reshape(out, shape);
}

array QuantizedEmbedding::as_linear(const array& x) const {
  if (x.ndim() == 0 || x.shape(-1) != dims_) {
    throw std::invalid_argument("QuantizedEmbedding.as_linear: input's last dimension " +
                                std::to_string(x.ndim() ? x.shape(-1) : 0) +
                                " does not match the embedding dimension " + std::to_string(dims_));
  }
  return quantized_matmul(x, param("weight"), param("scales"), biases(), true, spec_.group_size,
                          spec_.bits, spec_.mode);
}

std::shared_ptr<Embedding> QuantizedEmbedding::to_embedding() const {
  array w = dequantize(param("weight"), param("scales"), biases(), spec_.group_size, spec_.bits,
                       spec_.mode);
  auto e = std::make_shared<Embedding>(num_embeddings(), dims_, w.dtype());
  e->update({{"weight", w}});
  return e;
}

// ------------------------------------------------------------------ tree rewrites

namespace {

template <typename Fn>
void walk(Module& m, const std::string& prefix, Fn&& fn) {
  // Copy the list: fn may replace entries.
  auto children = m.children();
  for (const auto& [name, child] : children) {
    const std::string path = prefix.empty() ? name : prefix + "." + name;
    if (!fn(m, name, path, *child)) walk(*child, path, fn);
  }
}

}  // namespace

int quantize(Module& model, const QuantizationSpec& spec, const QuantizePredicate& predicate,
             bool quantize_weights) {
  int count = 0;
  walk(model, "",
       [&](Module& parent, const std::string& name, const std::string& path, Module& child) {
         auto* linear = dynamic_cast<Linear*>(&child);
         auto* embedding = dynamic_cast<Embedding*>(&child);
         if (!linear && !embedding) {
           // Quantized leaves have no quantizable children; other modules are walked into.
           return dynamic_cast<QuantizedLinear*>(&child) ||
                  dynamic_cast<QuantizedEmbedding*>(&child);
         }
         const int in_dims = linear ? linear->input_dims() : embedding->dims();
         std::optional<QuantizationSpec> s;
         if (predicate) {
           s = predicate(path, child);
         } else if (in_dims % spec.group_size == 0) {
           s = spec;
         }
         if (!s) return true;
         try {
           std::shared_ptr<Module> q;
           if (linear && quantize_weights) {
             q = QuantizedLinear::from_linear(*linear, *s);
           } else if (linear) {
             q = std::make_shared<QuantizedLinear>(linear->input_dims(), linear->output_dims(),
                                                   linear->has_bias(), *s,
                                                   linear->weight().dtype());
           } else if (quantize_weights) {
             q = QuantizedEmbedding::from_embedding(*embedding, *s);
           } else {
             q = std::make_shared<QuantizedEmbedding>(
                 embedding->num_embeddings(), embedding->dims(), *s, embedding->weight().dtype());
           }
           parent.replace_child(name, q);
         } catch (const std::exception& e) {
           throw std::invalid_argument("quantize: layer '" + path + "': " + e.what());
         }
         ++count;
         return true;
       });
  return count;
}

int dequantize(Module& model) {
  int count = 0;
  walk(model, "", [&](Module& parent, const std::string& name, const std::string&, Module& child) {
    if (auto* q = dynamic_cast<QuantizedLinear*>(&child)) {
      parent.replace_child(name, q->to_linear());
    } else if (auto* e = dynamic_cast<QuantizedEmbedding*>(&child)) {
      parent.replace_child(name, e->to_embedding());
    } else {
      return false;
    }
    ++count;
    return true;
  });
  return count;
}

double bits_per_weight(const Module& model) {
  double bytes = 0, params = 0;
  std::vector<const Module*> stack{&model};
  while (!stack.empty()) {
    const Module* m = stack.back();
    stack.pop_back();
    int bits = 0;
    if (auto* q = dynamic_cast<const QuantizedLinear*>(m)) bits = q->spec().bits;
    if (auto* e = dynamic_cast<const QuantizedEmbedding*>(m)) bits = e->spec().bits;
    for (const auto& [name, child] : m->children()) stack.push_back(child.get());
    for (const auto& [name, p] : m->parameters()) {
      if (name.find('.') != std::string::npos) continue;  // a child's, counted there
      bytes += static_cast<double>(p.nbytes());
      if (bits == 0 || name == "bias") {
        params += static_cast<double>(p.size());
      } else if (name == "weight") {
        params += static_cast<double>(p.size()) * 32.0 / bits;
      }
    }
  }
  return params > 0 ? bytes * 8.0 / params : 0.0;
}

}  // namespace mx::nn

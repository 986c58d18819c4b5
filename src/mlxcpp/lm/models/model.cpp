// The model_type registry and LanguageModel defaults.
#include "mlxcpp/lm/models/model.h"

#include "mlxcpp/mx/ops.h"

#include <mutex>
#include <stdexcept>

namespace lm {

namespace {

// Function-local statics: architecture files register from static initialisers in any order.
std::map<std::string, ModelFactory>& registry() {
  static std::map<std::string, ModelFactory> r;
  return r;
}
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

ModelRegistration::ModelRegistration(const std::string& model_type, ModelFactory factory) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  if (!registry().emplace(model_type, std::move(factory)).second) {
    throw std::logic_error("model_type '" + model_type + "' is registered twice");
  }
}

const ModelFactory& model_factory(const std::string& model_type) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().find(model_type);
  if (it == registry().end()) {
    std::string known;
    for (const auto& [name, f] : registry()) known += (known.empty() ? "" : ", ") + name;
    throw std::invalid_argument("unknown model_type '" + model_type + "' (known: " + known + ")");
  }
  return it->second;
}

std::vector<std::string> registered_model_types() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  std::vector<std::string> out;
  for (const auto& [name, f] : registry()) out.push_back(name);
  return out;
}

// Every parameter once: a tied embedding serves lookup and logits but is stored once, and a
// decode step reads the whole matrix for the logits.
mx::array LanguageModel::last_logits(const mx::array& tokens, PromptCache* cache) {
  auto logits = (*this)(tokens, cache);
  const int T = logits.shape(1);
  return mx::slice(logits, {0, T - 1, 0}, {logits.shape(0), T, logits.shape(2)});
}

size_t LanguageModel::decode_weight_bytes() const {
  size_t bytes = 0;
  for (const auto& [name, p] : parameters()) bytes += p.nbytes();
  return bytes;
}

int LanguageModel::static_layer_capacity(int /*layer*/, int capacity) const { return capacity; }

mx::array LanguageModel::static_decode(const mx::array&, const mx::array&,
                                       std::vector<std::pair<mx::array, mx::array>>&) {
  throw std::invalid_argument("model_type '" + model_type_ +
                              "' has no fixed-shape decode step (supports_static_decode)");
}

}  // namespace lm

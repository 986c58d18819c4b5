// Random-weight Gemma 3 checkpoints with the published configs and shapes.
#include "mlxcpp/lm/random_model.h"

#include <fcntl.h>
#include <lzma.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "mlxcpp/lm/load.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/transforms.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace lm {

namespace {

// The hub config.json files (transformers 4.50 / 4.55 exports), minus bookkeeping keys.
// 270M states its layer kinds explicitly; 4B+ carry only what differs from HF's defaults.
constexpr const char* kGemma3_270m = R"({
  "_sliding_window_pattern": 6, "architectures": ["Gemma3ForCausalLM"], "attention_bias": false,
  "attention_dropout": 0.0, "attn_logit_softcapping": null, "bos_token_id": 2, "eos_token_id": 1,
  "final_logit_softcapping": null, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
  "hidden_size": 640, "initializer_range": 0.02, "intermediate_size": 2048,
  "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "sliding_attention", "full_attention", "sliding_attention",
    "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
    "full_attention", "sliding_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "sliding_attention", "full_attention"],
  "max_position_embeddings": 32768, "model_type": "gemma3_text", "num_attention_heads": 4,
  "num_hidden_layers": 18, "num_key_value_heads": 1, "pad_token_id": 0,
  "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000.0,
  "rope_scaling": null, "rope_theta": 1000000.0, "sliding_window": 512,
  "torch_dtype": "bfloat16", "transformers_version": "4.55.0.dev0",
  "use_bidirectional_attention": false, "use_cache": true, "vocab_size": 262144})";

constexpr const char* kGemma3_1b = R"({
  "architectures": ["Gemma3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "attn_logit_softcapping": null, "bos_token_id": 2, "cache_implementation": "hybrid",
  "eos_token_id": [1, 106], "final_logit_softcapping": null, "head_dim": 256,
  "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152, "initializer_range": 0.02,
  "intermediate_size": 6912, "max_position_embeddings": 32768, "model_type": "gemma3_text",
  "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1,
  "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
  "rope_local_base_freq": 10000, "rope_scaling": null, "rope_theta": 1000000,
  "sliding_window": 512, "sliding_window_pattern": 6, "torch_dtype": "bfloat16",
  "transformers_version": "4.50.0.dev0", "use_cache": true, "vocab_size": 262144})";

// The Gemma3ForConditionalGeneration wrapper shared by 4B/12B/27B; text_config is filled in.
constexpr const char* kGemma3Vlm = R"({
  "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999,
  "eoi_token_index": 256000, "eos_token_id": [1, 106], "image_token_index": 262144,
  "initializer_range": 0.02, "mm_tokens_per_image": 256, "model_type": "gemma3",
  "text_config": {}, "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
  "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
    "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
    "patch_size": 14, "vision_use_head": false}})";

constexpr const char* kText4b = R"({"hidden_size": 2560, "intermediate_size": 10240,
  "model_type": "gemma3_text", "num_hidden_layers": 34,
  "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024})";
constexpr const char* kText12b = R"({"hidden_size": 3840, "intermediate_size": 15360,
  "model_type": "gemma3_text", "num_attention_heads": 16, "num_hidden_layers": 48,
  "num_key_value_heads": 8, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
  "sliding_window": 1024})";
constexpr const char* kText27b = R"({"head_dim": 128, "hidden_size": 5376,
  "intermediate_size": 21504, "model_type": "gemma3_text", "num_attention_heads": 32,
  "num_hidden_layers": 62, "num_key_value_heads": 16, "query_pre_attn_scalar": 168,
  "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024})";

// gemma3.md §5.5: the -it generation_config.json.
constexpr const char* kGenerationConfig = R"({
  "bos_token_id": 2, "cache_implementation": "hybrid", "do_sample": true,
  "eos_token_id": [1, 106], "pad_token_id": 0, "top_k": 64, "top_p": 0.95})";

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

int json_int(const json& j, const char* key, int def) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_number_integer() || j[key].get<int>() <= 0) {
    throw std::invalid_argument(std::string("config.json: field 'vision_config.") + key +
                                "' must be a positive integer");
  }
  return j[key].get<int>();
}

const char* safetensors_dtype(mx::Dtype d) {
  if (d == mx::bfloat16) return "BF16";
  if (d == mx::float16) return "F16";
  if (d == mx::float32) return "F32";
  throw std::invalid_argument("random-model: dtype " + mx::dtype_name(d) +
                              " is not one of bfloat16, float16, float32");
}

std::string errno_text() { return std::strerror(errno); }

// A file written with POSIX calls so it can be fsynced before the folder is renamed.
class OutFile {
 public:
  explicit OutFile(const fs::path& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error(path.string() + ": cannot create: " + errno_text());
  }
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;
  void write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw std::runtime_error(path_.string() + ": write failed: " + errno_text());
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  void close() {
    if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
      fd_ = -1;
      throw std::runtime_error(path_.string() + ": write failed: " + errno_text());
    }
    fd_ = -1;
  }

 private:
  fs::path path_;
  int fd_ = -1;
};

void write_text(const fs::path& path, const std::string& text) {
  OutFile f(path);
  f.write(text.data(), text.size());
  f.close();
}

// Copies the tokenizer files of `dir` into `out`, decompressing .xz variants.
void copy_tokenizer(const fs::path& dir, const fs::path& out) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw std::runtime_error("tokenizer folder '" + dir.string() + "' does not exist");
  }
  bool have_json = false;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "tokenizer.model", "chat_template.jinja"}) {
    fs::path plain = dir / name, xz = dir / (std::string(name) + ".xz");
    if (fs::exists(plain, ec)) {
      fs::copy_file(plain, out / name, fs::copy_options::overwrite_existing);
    } else if (fs::exists(xz, ec)) {
      write_text(out / name, read_xz_file(xz));
    } else {
      continue;
    }
    if (std::string(name) == "tokenizer.json") have_json = true;
  }
  if (!have_json) {
    throw std::runtime_error("tokenizer folder '" + dir.string() +
                             "' has no tokenizer.json (or tokenizer.json.xz)");
  }
}

struct Shard {
  std::vector<size_t> tensors;  // indices into the tensor list
  size_t bytes = 0;
};

}  // namespace

std::vector<std::string> published_config_names() {
  return {"gemma3-270m", "gemma3-1b", "gemma3-4b", "gemma3-12b", "gemma3-27b"};
}

json published_config(const std::string& name) {
  if (name == "gemma3-270m") return json::parse(kGemma3_270m);
  if (name == "gemma3-1b") return json::parse(kGemma3_1b);
  const char* text = name == "gemma3-4b"    ? kText4b
                     : name == "gemma3-12b" ? kText12b
                     : name == "gemma3-27b" ? kText27b
                                            : nullptr;
  if (!text) {
    std::string known;
    for (const auto& n : published_config_names()) known += (known.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown config '" + name + "' (known: " + known + ")");
  }
  json c = json::parse(kGemma3Vlm);
  c["text_config"] = json::parse(text);
  return c;
}

std::vector<std::pair<std::string, mx::Shape>> checkpoint_tensors(const json& config) {
  if (!config.is_object() || !config.contains("model_type") || !config["model_type"].is_string()) {
    throw std::invalid_argument("config.json: no model_type string field");
  }
  std::string type = config["model_type"].get<std::string>();
  // The model's own parameter tree gives the text shapes; parameters are lazy, so building
  // even a 27B model allocates nothing.
  auto model = model_factory(type)(config, mx::float32);
  bool multimodal = type == "gemma3";
  std::vector<std::pair<std::string, mx::Shape>> out;
  for (const auto& [name, p] : model->parameters()) {
    std::string ckpt = name;
    // Original Gemma3ForConditionalGeneration uploads name the decoder language_model.model.*.
    if (multimodal && starts_with(name, "model.")) ckpt = "language_model." + name;
    if (multimodal && name == "lm_head.weight") ckpt = "language_model.lm_head.weight";
    out.emplace_back(ckpt, p.shape());
  }
  if (multimodal && config.contains("vision_config") && config["vision_config"].is_object()) {
    // SigLIP tower and projector (gemma3.md §3.2, §4.1); defaults are the published values.
    const json& v = config["vision_config"];
    int hv = json_int(v, "hidden_size", 1152), iv = json_int(v, "intermediate_size", 4304);
    int layers = json_int(v, "num_hidden_layers", 27), image = json_int(v, "image_size", 896);
    int patch = json_int(v, "patch_size", 14), channels = json_int(v, "num_channels", 3);
    int text_hidden = model->parameters().at("model.norm.weight").shape(0);
    const std::string vm = "vision_tower.vision_model.";
    out.emplace_back(vm + "embeddings.patch_embedding.weight",
                     mx::Shape{hv, channels, patch, patch});
    out.emplace_back(vm + "embeddings.patch_embedding.bias", mx::Shape{hv});
    int patches = (image / patch) * (image / patch);
    out.emplace_back(vm + "embeddings.position_embedding.weight", mx::Shape{patches, hv});
    for (int j = 0; j < layers; ++j) {
      std::string l = vm + "encoder.layers." + std::to_string(j) + ".";
      for (const char* ln : {"layer_norm1", "layer_norm2"}) {
        out.emplace_back(l + ln + ".weight", mx::Shape{hv});
        out.emplace_back(l + ln + ".bias", mx::Shape{hv});
      }
      for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
        out.emplace_back(l + "self_attn." + proj + ".weight", mx::Shape{hv, hv});
        out.emplace_back(l + "self_attn." + proj + ".bias", mx::Shape{hv});
      }
      out.emplace_back(l + "mlp.fc1.weight", mx::Shape{iv, hv});
      out.emplace_back(l + "mlp.fc1.bias", mx::Shape{iv});
      out.emplace_back(l + "mlp.fc2.weight", mx::Shape{hv, iv});
      out.emplace_back(l + "mlp.fc2.bias", mx::Shape{hv});
    }
    out.emplace_back(vm + "post_layernorm.weight", mx::Shape{hv});
    out.emplace_back(vm + "post_layernorm.bias", mx::Shape{hv});
    out.emplace_back("multi_modal_projector.mm_input_projection_weight",
                     mx::Shape{hv, text_hidden});
    out.emplace_back("multi_modal_projector.mm_soft_emb_norm.weight", mx::Shape{hv});
  }
  return out;
}

std::string read_xz_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open the file");
  std::string packed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  lzma_stream strm = LZMA_STREAM_INIT;
  if (lzma_stream_decoder(&strm, UINT64_MAX, 0) != LZMA_OK) {
    throw std::runtime_error(file.string() + ": cannot start the xz decoder");
  }
  std::string out;
  char buf[1 << 16];
  strm.next_in = reinterpret_cast<const uint8_t*>(packed.data());
  strm.avail_in = packed.size();
  lzma_ret ret = LZMA_OK;
  while (ret == LZMA_OK) {
    strm.next_out = reinterpret_cast<uint8_t*>(buf);
    strm.avail_out = sizeof(buf);
    ret = lzma_code(&strm, LZMA_FINISH);
    out.append(buf, sizeof(buf) - strm.avail_out);
  }
  lzma_end(&strm);
  if (ret != LZMA_STREAM_END) {
    throw std::runtime_error(file.string() + ": corrupt or truncated xz data (liblzma error " +
                             std::to_string(static_cast<int>(ret)) + ")");
  }
  return out;
}

size_t write_random_model(const json& config_in, const fs::path& out,
                          const RandomModelOptions& options) {
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!fs::is_directory(out, ec)) {
      throw std::runtime_error("--out '" + out.string() + "' exists and is not a folder");
    }
    if (!fs::is_empty(out, ec)) {
      throw std::runtime_error("--out '" + out.string() +
                               "' exists and is not empty; refusing to overwrite it");
    }
  }
  const char* st_dtype = safetensors_dtype(options.dtype);
  json config = config_in;
  // HF's spelling of the dtype the weights are written in.
  config["torch_dtype"] = options.dtype == mx::bfloat16  ? "bfloat16"
                          : options.dtype == mx::float16 ? "float16"
                                                         : "float32";
  auto tensors = checkpoint_tensors(config);

  // Build beside `out`, then rename: the folder appears whole or not at all.
  fs::path parent = fs::absolute(out).parent_path();
  fs::create_directories(parent);
  std::random_device rd;
  fs::path tmp = parent / ("." + out.filename().string() + ".tmp." + std::to_string(::getpid()) +
                           "." + std::to_string(rd()));
  fs::create_directory(tmp);
  try {
    write_text(tmp / "config.json", config.dump(2) + "\n");
    write_text(tmp / "generation_config.json", json::parse(kGenerationConfig).dump(2) + "\n");
    copy_tokenizer(options.tokenizer_dir, tmp);

    // Greedy shards in tensor order.
    size_t elem = mx::size_of(options.dtype);
    std::vector<Shard> shards(1);
    size_t total_params = 0, total_bytes = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      size_t n = 1;
      for (int d : tensors[i].second) n *= static_cast<size_t>(d);
      size_t bytes = n * elem;
      total_params += n;
      total_bytes += bytes;
      if (!shards.back().tensors.empty() && shards.back().bytes + bytes > options.max_shard_bytes) {
        shards.emplace_back();
      }
      shards.back().tensors.push_back(i);
      shards.back().bytes += bytes;
    }

    auto keys = mx::random::split(mx::random::key(options.seed), static_cast<int>(tensors.size()));
    mx::eval(keys);
    json weight_map = json::object();
    char name_buf[64];
    for (size_t s = 0; s < shards.size(); ++s) {
      std::string file = "model.safetensors";
      if (shards.size() > 1) {
        std::snprintf(name_buf, sizeof(name_buf), "model-%05zu-of-%05zu.safetensors", s + 1,
                      shards.size());
        file = name_buf;
      }
      // The header is known before any data: write it, then each tensor as it is generated.
      // nlohmann::json keeps object keys sorted, so offsets follow the sorted names.
      std::map<std::string, size_t> sorted;
      for (size_t i : shards[s].tensors) sorted.emplace(tensors[i].first, i);
      json header = json::object();
      header["__metadata__"] = {{"format", "pt"}};
      size_t offset = 0;
      for (const auto& [name, i] : sorted) {
        size_t n = 1;
        for (int d : tensors[i].second) n *= static_cast<size_t>(d);
        header[name] = {{"dtype", st_dtype},
                        {"shape", tensors[i].second},
                        {"data_offsets", {offset, offset + n * elem}}};
        offset += n * elem;
        weight_map[name] = file;
      }
      std::string h = header.dump();
      h.append((8 - (8 + h.size()) % 8) % 8, ' ');
      uint64_t hn = h.size();
      uint8_t len[8];
      for (int b = 0; b < 8; ++b) len[b] = static_cast<uint8_t>((hn >> (8 * b)) & 0xff);
      OutFile f(tmp / file);
      f.write(len, 8);
      f.write(h.data(), h.size());
      for (const auto& [name, i] : sorted) {
        const mx::Shape& shape = tensors[i].second;
        float std_dev = shape.size() >= 2 ? 0.02f : 0.1f;
        auto key = mx::reshape(
            mx::slice(keys, {static_cast<int>(i), 0}, {static_cast<int>(i) + 1, 2}), {2});
        auto a = mx::random::normal(shape, mx::float32, 0.0f, std_dev, key);
        a = mx::astype(a, options.dtype);
        a.eval();
        f.write(a.data<char>(), a.nbytes());
      }
      f.close();
    }
    if (shards.size() > 1) {
      json index = {{"metadata", {{"total_size", total_bytes}, {"total_parameters", total_params}}},
                    {"weight_map", weight_map}};
      write_text(tmp / "model.safetensors.index.json", index.dump(2) + "\n");
    }
    if (fs::exists(out, ec)) fs::remove(out);  // empty (checked above)
    fs::rename(tmp, out);
    return total_params;
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace lm

// Encode throughput of lm::Tokenizer on one thread (compare with bench_hf.py on the same file).
// Usage: bench_tokenizer TOKENIZER_JSON CORPUS_FILE [REPEATS]
// Prints one JSON line: load time, MB/s, token count and a checksum of the ids.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "mlxcpp/lm/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER_JSON CORPUS_FILE [REPEATS]\n", argv[0]);
    return 2;
  }
  using clock = std::chrono::steady_clock;
  std::string json = lm::read_file(argv[1]);
  auto t0 = clock::now();
  auto tok = lm::Tokenizer::from_json(json, argv[1]);
  double load_s = std::chrono::duration<double>(clock::now() - t0).count();
  std::string text = lm::read_file(argv[2]);
  const std::string sep = "\n\x1e\n";
  std::vector<std::string> docs;
  for (size_t start = 0;;) {
    size_t p = text.find(sep, start);
    docs.push_back(text.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) break;
    start = p + sep.size();
  }
  size_t nbytes = 0;
  for (auto& d : docs) nbytes += d.size();
  int repeats = argc > 3 ? std::atoi(argv[3]) : 3;
  double best = 1e30;
  std::vector<std::vector<int32_t>> encs(docs.size());
  for (int r = 0; r < repeats; ++r) {
    // A fresh tokenizer each repeat so the word cache starts cold, as HF's does per process.
    auto fresh = lm::Tokenizer::from_json(json, argv[1]);
    auto s = clock::now();
    for (size_t k = 0; k < docs.size(); ++k) encs[k] = fresh.encode(docs[k], false);
    best = std::min(best, std::chrono::duration<double>(clock::now() - s).count());
  }
  unsigned long long checksum = 0, count = 0;
  const unsigned long long mod = 1ull << 61;
  for (auto& e : encs) {
    for (int32_t id : e) {
      checksum = static_cast<unsigned long long>(
          (static_cast<unsigned __int128>(checksum) * 1000003u + static_cast<unsigned>(id)) % mod);
    }
    count += e.size();
  }
  std::printf(
      "{\"impl\": \"mlxcpp\", \"load_s\": %.4f, \"mb_per_s\": %.3f, \"seconds\": %.4f, "
      "\"bytes\": %zu, \"tokens\": %llu, \"checksum\": %llu}\n",
      load_s, nbytes / 1e6 / best, best, nbytes, count, checksum);
  return 0;
}

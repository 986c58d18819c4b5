// io: files written by NumPy and by an independent safetensors writer
// (tools/reference/io_refs.py), round trips, and corrupt input.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "common/temp_dir.h"
#include "mlxcpp/mx/io.h"

using mx::array;
namespace fs = std::filesystem;

namespace {

std::string data_dir() { return std::string(MLXCPP_TEST_DATA) + "/mx/io/"; }

const nlohmann::json& expected() {
  static const nlohmann::json j = [] {
    std::ifstream f(data_dir() + "expected.json");
    return nlohmann::json::parse(f);
  }();
  return j;
}

std::string tmp_path(const std::string& name) {
  return (mxtest::process_temp_dir("mlxcpp_io") / name).string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const std::string& path, const std::string& s) {
  std::ofstream f(path, std::ios::binary);
  f << s;
}

}  // namespace

TEST(Npy, LoadsWhatNumpyWrote) {
  for (auto name :
       {"f32", "f64_fortran", "i64_big_endian", "u8", "b1", "f16", "i32_scalar", "empty"}) {
    SCOPED_TRACE(name);
    array a = mx::load(data_dir() + name + ".npy");
    auto& e = expected().at(name);
    mxtest::expect_close(a, e.at("data").get<std::vector<double>>(), e.at("shape").get<mx::Shape>(),
                         0, 0);
  }
  EXPECT_EQ(mx::load(data_dir() + "i64_big_endian.npy").dtype(), mx::int64);
  EXPECT_EQ(mx::load(data_dir() + "f16.npy").dtype(), mx::float16);
  array c = mx::load(data_dir() + "c64.npy");
  EXPECT_EQ(c.dtype(), mx::complex64);
  mxtest::expect_close(mx::real(c), {1, -3.5}, {2}, 0, 0);
  mxtest::expect_close(mx::imag(c), {2, -0.5}, {2}, 0, 0);
}

TEST(Npy, RoundTripIsByteCompatibleWithNumpy) {
  // Our writer reproduces NumPy's own bytes for a C-ordered little-endian array.
  array a = mx::load(data_dir() + "f32.npy");
  std::string out = tmp_path("f32.npy");
  mx::save(out, a);
  EXPECT_EQ(read_bytes(out), read_bytes(data_dir() + "f32.npy"));
  mx::save(out, mx::transpose(a));  // strided input is written in C order
  mxtest::expect_close(mx::load(out), mxtest::to_vector(mx::transpose(a)), {4, 3}, 0, 0);
  EXPECT_THROW(mx::save(out, mx::astype(a, mx::bfloat16)), std::invalid_argument);
}

TEST(Npz, LoadsStoredAndDeflatedArchives) {
  for (auto file : {"stored.npz", "compressed.npz"}) {
    SCOPED_TRACE(file);
    auto m = mx::load_npz(data_dir() + file);
    ASSERT_EQ(m.size(), 2u);
    mxtest::expect_close(m.at("a"), expected().at("f32").at("data").get<std::vector<double>>(),
                         {3, 4}, 0, 0);
    mxtest::expect_close(m.at("b"), {0, 7, 255}, {3}, 0, 0);
  }
  for (bool compressed : {false, true}) {
    std::string out = tmp_path(compressed ? "c.npz" : "s.npz");
    mx::save_npz(out, {{"x", mx::arange(5)}, {"y", array({true, false})}}, compressed);
    auto m = mx::load_npz(out);
    mxtest::expect_close(m.at("x"), {0, 1, 2, 3, 4}, {5}, 0, 0);
    mxtest::expect_close(m.at("y"), {1, 0}, {2}, 0, 0);
  }
}

TEST(Safetensors, LoadsZeroCopyWithMetadata) {
  auto [arrays, meta] = mx::load_safetensors(data_dir() + "model.safetensors");
  EXPECT_EQ(meta.at("format"), "mlx");
  ASSERT_EQ(arrays.size(), 4u);
  mxtest::expect_close(arrays.at("model.embed.weight"),
                       expected().at("f32").at("data").get<std::vector<double>>(), {3, 4}, 0, 0);
  array bf = arrays.at("model.norm.weight");
  EXPECT_EQ(bf.dtype(), mx::bfloat16);
  mxtest::expect_close(
      bf, expected().at("safetensors").at("model.norm.weight").get<std::vector<double>>(), {3}, 0,
      0);
  mxtest::expect_close(arrays.at("model.ids"), {5, -6}, {2}, 0, 0);
  mxtest::expect_close(arrays.at("model.mask"), {1, 0, 1}, {3}, 0, 0);
}

// A loaded tensor lives in a read-only file mapping: an op whose input is the
// mapping's last holder must not reuse (write into) that memory.
TEST(Safetensors, OpsNeverWriteIntoTheFileMapping) {
  std::string out = tmp_path("donate.safetensors");
  mx::save_safetensors(out, {{"x", mx::arange(4.0f)}});
  array y = mx::array(0.0f);
  {
    auto loaded = mx::load_safetensors(out);
    array x = loaded.first.at("x");
    loaded.first.clear();
    y = mx::exp(std::move(x));
  }
  mxtest::expect_close(y, {1.0, 2.718281828, 7.389056099, 20.08553692}, {4}, 1e-5, 1e-6);
  auto again = mx::load_safetensors(out);
  mxtest::expect_close(again.first.at("x"), {0, 1, 2, 3}, {4}, 0, 0);
}

// Files loaded for the CPU are read into resident memory placed so that the
// data section starts on a 64-byte boundary (vector loads of a tensor's first
// bytes then do not straddle cache lines); MLXCPP_MMAP_WEIGHTS=1 maps the file
// instead (page aligned, so the data keeps the header's misalignment). Both
// hold the saved values. The resident copy is the CPU's loading path, so the
// test loads for the CPU even where a GPU is the default device.
TEST(Safetensors, ResidentCopyIsAlignedAndHoldsTheFile) {
  const mx::Device previous = mx::default_device();
  mx::set_default_device(mx::Device::cpu);
  struct Restore {
    mx::Device d;
    ~Restore() { mx::set_default_device(d); }
  } restore{previous};
  std::string out = tmp_path("resident.safetensors");
  mx::save_safetensors(
      out, {{"a", mx::astype(mx::arange(100.0f), mx::bfloat16)}, {"b", mx::arange(37.0f)}},
      {{"note", "metadata that makes the header length not a multiple of 64"}});
  const std::string bytes = read_bytes(out);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  const size_t start = 8 + n;  // "a" sorts first: its data starts here
  ASSERT_NE(start % 64, 0u) << "the test needs a misaligned data section";
  std::vector<double> a_want(100), b_want(37);
  for (int i = 0; i < 100; ++i) a_want[i] = i;
  for (int i = 0; i < 37; ++i) b_want[i] = i;
  ::unsetenv("MLXCPP_MMAP_WEIGHTS");
  {
    auto resident = mx::load_safetensors(out);
    const array& a = resident.first.at("a");
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data<char>()) % 64, 0u);
    mxtest::expect_close(a, a_want, {100}, 0, 0);
    mxtest::expect_close(resident.first.at("b"), b_want, {37}, 0, 0);
    EXPECT_EQ(resident.second.at("note"),
              "metadata that makes the header length not a multiple of 64");
  }
  ::setenv("MLXCPP_MMAP_WEIGHTS", "1", 1);
  auto mapped = mx::load_safetensors(out);
  ::unsetenv("MLXCPP_MMAP_WEIGHTS");
  const array& a = mapped.first.at("a");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data<char>()) % 64, start % 64);
  mxtest::expect_close(a, a_want, {100}, 0, 0);
  mxtest::expect_close(mapped.first.at("b"), b_want, {37}, 0, 0);
}

TEST(Safetensors, SaveThenLoadRoundTripsEveryDtype) {
  mx::ArrayMap in;
  for (auto d :
       {mx::bool_, mx::uint8, mx::uint16, mx::uint32, mx::uint64, mx::int8, mx::int16, mx::int32,
        mx::int64, mx::float16, mx::float32, mx::float64, mx::bfloat16, mx::complex64}) {
    in.insert_or_assign(mx::dtype_name(d), mx::astype(mx::reshape(mx::arange(6), {2, 3}), d));
  }
  in.insert_or_assign("strided", mx::transpose(mx::reshape(mx::arange(6.0f), {2, 3})));
  std::string out = tmp_path("rt.safetensors");
  mx::save_safetensors(out, in, {{"k", "v"}});
  auto [back, meta] = mx::load_safetensors(out);
  EXPECT_EQ(meta.at("k"), "v");
  ASSERT_EQ(back.size(), in.size());
  for (auto& [k, v] : in) {
    SCOPED_TRACE(k);
    EXPECT_EQ(back.at(k).dtype(), v.dtype());
    EXPECT_TRUE(mx::array_equal(back.at(k), v).item<bool>());
  }
  // Saving twice gives the same bytes (sorted names, no timestamps).
  std::string again = tmp_path("rt2.safetensors");
  mx::save_safetensors(again, in, {{"k", "v"}});
  EXPECT_EQ(read_bytes(out), read_bytes(again));
}

TEST(Safetensors, ShardedIndex) {
  auto [arrays, meta] = mx::load_sharded_safetensors(data_dir() + "model.safetensors.index.json");
  ASSERT_EQ(arrays.size(), 2u);
  mxtest::expect_close(arrays.at("a.weight"), {1, 1, 1, 1}, {2, 2}, 0, 0);
  mxtest::expect_close(arrays.at("b.weight"), {2, 2, 2}, {3}, 0, 0);
  // An index that names a tensor its shard lacks is an error naming both.
  std::string dir = tmp_path("bad_index");
  fs::create_directories(dir);
  fs::copy_file(data_dir() + "shard-00001.safetensors", dir + "/shard-00001.safetensors",
                fs::copy_options::overwrite_existing);
  write_bytes(dir + "/model.safetensors.index.json",
              R"({"weight_map": {"missing.weight": "shard-00001.safetensors"}})");
  try {
    mx::load_sharded_safetensors(dir);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.weight"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, CorruptFilesGiveClearErrors) {
  std::string good = read_bytes(data_dir() + "model.safetensors");
  std::string path = tmp_path("corrupt.safetensors");
  auto expect_error = [&](const std::string& bytes, const std::string& needle) {
    write_bytes(path, bytes);
    try {
      mx::load_safetensors(path);
      ADD_FAILURE() << "no error for: " << needle;
    } catch (const std::runtime_error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  };
  expect_error(good.substr(0, 5), "too short");
  expect_error(good.substr(0, 40), "truncated");
  expect_error(good.substr(0, good.size() - 3), "outside");
  std::string bad_json = good;
  bad_json[8] = '!';  // the opening brace
  expect_error(bad_json, "JSON");
  std::string f8 = good;
  auto pos = f8.find("\"BF16\"");
  f8.replace(pos, 6, "\"F8E4\"");
  expect_error(f8, "unsupported dtype");
  EXPECT_THROW(mx::load_safetensors(tmp_path("does_not_exist.safetensors")), std::runtime_error);
  // Every truncation and random byte flips either load or throw; none crash.
  std::mt19937 rng(7);
  for (size_t cut = 0; cut < good.size(); cut += 7) {
    write_bytes(path, good.substr(0, cut));
    try {
      mx::load_safetensors(path);
    } catch (const std::runtime_error&) {
    }
  }
  for (int i = 0; i < 300; ++i) {
    std::string b = good;
    b[rng() % b.size()] = static_cast<char>(rng());
    write_bytes(path, b);
    try {
      auto r = mx::load_safetensors(path);
      for (auto& [k, v] : r.first) v.eval();
    } catch (const std::runtime_error&) {
    }
  }
}

TEST(Npy, CorruptFilesGiveClearErrors) {
  std::string good = read_bytes(data_dir() + "f32.npy");
  std::string path = tmp_path("corrupt.npy");
  for (size_t cut = 0; cut < good.size(); cut += 5) {
    write_bytes(path, good.substr(0, cut));
    EXPECT_THROW(mx::load(path), std::runtime_error) << cut;
  }
  // Found by fuzz/fuzz_safetensors: a shape that is not a tuple.
  std::string no_tuple = good;
  no_tuple.replace(no_tuple.find("(3, 4)"), 1, ",");
  write_bytes(path, no_tuple);
  EXPECT_THROW(mx::load(path), std::runtime_error);
  std::string bad = good;
  bad.replace(bad.find("<f4"), 3, "<x9");
  write_bytes(path, bad);
  EXPECT_THROW(mx::load(path), std::runtime_error);
  std::string npz = read_bytes(data_dir() + "compressed.npz");
  std::string zpath = tmp_path("corrupt.npz");
  for (size_t cut = 0; cut < npz.size(); cut += 11) {
    write_bytes(zpath, npz.substr(0, cut));
    EXPECT_THROW(mx::load_npz(zpath), std::runtime_error) << cut;
  }
  std::string flipped = npz;
  flipped[60] ^= 0x55;
  write_bytes(zpath, flipped);
  EXPECT_THROW(mx::load_npz(zpath), std::runtime_error);
}

TEST(Io, SavesAreAtomic) {
  // A failed save leaves the old file untouched and no temporary behind.
  std::string path = tmp_path("atomic.safetensors");
  mx::save_safetensors(path, {{"a", mx::arange(3)}});
  std::string before = read_bytes(path);
  EXPECT_THROW(mx::save(tmp_path("atomic.npy"), mx::astype(mx::arange(3), mx::bfloat16)),
               std::invalid_argument);
  EXPECT_FALSE(fs::exists(tmp_path("atomic.npy")));
  EXPECT_EQ(read_bytes(path), before);
  int temps = 0;
  for (auto& e : fs::directory_iterator(fs::path(path).parent_path())) {
    temps += e.path().string().find(".tmp.") != std::string::npos;
  }
  EXPECT_EQ(temps, 0);
}

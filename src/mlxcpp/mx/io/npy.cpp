// NumPy .npy (format versions 1-3) and .npz (a zip of .npy files, stored or
// deflated).
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "mlxcpp/mx/io.h"
#include "mlxcpp/mx/io/file.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/transforms.h"

namespace mx {

namespace {

std::runtime_error npy_error(const std::string& name, const std::string& what) {
  return std::runtime_error("[load] '" + name + "': " + what);
}

// descr such as '<f4', '|b1', '>i8'.
Dtype dtype_from_descr(const std::string& d, bool& swap, const std::string& name) {
  if (d.size() < 3) throw npy_error(name, "unsupported dtype descr '" + d + "'");
  char order = d[0], kind = d[1];
  std::string bytes = d.substr(2);
  swap = order == '>' && bytes != "1";
  if (order != '<' && order != '>' && order != '|' && order != '=') {
    throw npy_error(name, "unsupported byte order in descr '" + d + "'");
  }
  if (kind == 'b' && bytes == "1") return bool_;
  if (kind == 'u') {
    if (bytes == "1") return uint8;
    if (bytes == "2") return uint16;
    if (bytes == "4") return uint32;
    if (bytes == "8") return uint64;
  }
  if (kind == 'i') {
    if (bytes == "1") return int8;
    if (bytes == "2") return int16;
    if (bytes == "4") return int32;
    if (bytes == "8") return int64;
  }
  if (kind == 'f') {
    if (bytes == "2") return float16;
    if (bytes == "4") return float32;
    if (bytes == "8") return float64;
  }
  if (kind == 'c' && bytes == "8") return complex64;
  throw npy_error(name, "unsupported dtype descr '" + d + "'");
}

std::string descr_of(Dtype d) {
  switch (d.val) {
    case Dtype::Val::bool_:
      return "|b1";
    case Dtype::Val::uint8:
      return "|u1";
    case Dtype::Val::uint16:
      return "<u2";
    case Dtype::Val::uint32:
      return "<u4";
    case Dtype::Val::uint64:
      return "<u8";
    case Dtype::Val::int8:
      return "|i1";
    case Dtype::Val::int16:
      return "<i2";
    case Dtype::Val::int32:
      return "<i4";
    case Dtype::Val::int64:
      return "<i8";
    case Dtype::Val::float16:
      return "<f2";
    case Dtype::Val::float32:
      return "<f4";
    case Dtype::Val::float64:
      return "<f8";
    case Dtype::Val::complex64:
      return "<c8";
    case Dtype::Val::bfloat16:
      break;
  }
  throw std::invalid_argument(
      "[save] NumPy has no bfloat16 type; save as safetensors or convert with astype");
}

// Finds the value text of 'key' in the header dict.
std::string dict_value(const std::string& h, const std::string& key, const std::string& name) {
  auto k = h.find("'" + key + "'");
  if (k == std::string::npos) throw npy_error(name, "header has no '" + key + "' entry");
  auto colon = h.find(':', k);
  if (colon == std::string::npos) throw npy_error(name, "malformed header near '" + key + "'");
  size_t b = h.find_first_not_of(" ", colon + 1);
  if (b == std::string::npos) throw npy_error(name, "malformed header near '" + key + "'");
  size_t e;
  if (h[b] == '\'') {
    e = h.find('\'', b + 1);
    if (e == std::string::npos) throw npy_error(name, "unterminated string in header");
    return h.substr(b + 1, e - b - 1);
  }
  if (h[b] == '(') {
    e = h.find(')', b);
    if (e == std::string::npos) throw npy_error(name, "unterminated shape tuple in header");
    return h.substr(b, e - b + 1);
  }
  e = h.find_first_of(",}", b);
  if (e == std::string::npos) throw npy_error(name, "malformed header near '" + key + "'");
  std::string v = h.substr(b, e - b);
  while (!v.empty() && v.back() == ' ') v.pop_back();
  return v;
}

}  // namespace

namespace io {

array parse_npy(const uint8_t* data, size_t size, const std::string& name) {
  static const uint8_t magic[] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(data, magic, 6) != 0)
    throw npy_error(name, "not a .npy file (bad magic)");
  int major = data[6];
  size_t header_len, start;
  if (major == 1) {
    header_len = data[8] | (data[9] << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) throw npy_error(name, "truncated header");
    header_len = data[8] | (data[9] << 8) | (static_cast<size_t>(data[10]) << 16) |
                 (static_cast<size_t>(data[11]) << 24);
    start = 12;
  } else {
    throw npy_error(name, "unsupported .npy format version " + std::to_string(major));
  }
  if (header_len > size - start) throw npy_error(name, "header runs past the end of the file");
  std::string h(reinterpret_cast<const char*>(data + start), header_len);
  bool swap = false;
  Dtype dtype = dtype_from_descr(dict_value(h, "descr", name), swap, name);
  std::string fortran = dict_value(h, "fortran_order", name);
  if (fortran != "True" && fortran != "False")
    throw npy_error(name, "bad fortran_order '" + fortran + "'");
  std::string tuple = dict_value(h, "shape", name);
  if (tuple.size() < 2 || tuple.front() != '(' || tuple.back() != ')') {
    throw npy_error(name, "shape '" + tuple + "' is not a tuple");
  }
  Shape shape;
  uint64_t numel = 1;
  {
    std::string inner = tuple.substr(1, tuple.size() - 2);
    size_t p = 0;
    while (p < inner.size()) {
      size_t q = inner.find(',', p);
      std::string tok = inner.substr(p, q == std::string::npos ? std::string::npos : q - p);
      tok.erase(std::remove(tok.begin(), tok.end(), ' '), tok.end());
      if (!tok.empty()) {
        if (tok.size() > 10 || tok.find_first_not_of("0123456789") != std::string::npos) {
          throw npy_error(name, "bad dimension '" + tok + "' in shape " + tuple);
        }
        uint64_t d = std::stoull(tok);
        if (d > static_cast<uint64_t>(INT32_MAX))
          throw npy_error(name, "dimension too large in " + tuple);
        shape.push_back(static_cast<ShapeElem>(d));
        numel *= d;
        if (numel > (uint64_t{1} << 48)) throw npy_error(name, "shape " + tuple + " is too large");
      }
      if (q == std::string::npos) break;
      p = q + 1;
    }
  }
  size_t nbytes = numel * size_of(dtype);
  size_t offset = start + header_len;
  if (size - offset < nbytes) {
    throw npy_error(name, "data is truncated: shape " + tuple + " needs " + std::to_string(nbytes) +
                              " bytes, the file has " + std::to_string(size - offset));
  }
  bool fortran_order = fortran == "True";
  Shape stored = shape;
  if (fortran_order) std::reverse(stored.begin(), stored.end());
  auto buf = allocator::malloc(std::max<size_t>(nbytes, 1));
  std::memcpy(buf.raw_ptr(), data + offset, nbytes);
  if (swap) {
    size_t w = size_of(dtype) == 8 && dtype == complex64 ? 4 : size_of(dtype);
    auto* p = static_cast<uint8_t*>(buf.raw_ptr());
    for (size_t i = 0; i < nbytes; i += w) std::reverse(p + i, p + i + w);
  }
  array out(buf, stored, dtype);
  if (fortran_order && shape.size() > 1) out = copy(transpose(out));
  return out;
}

}  // namespace io

array load(const std::string& path) {
  io::MappedFile f(path);
  array a = io::parse_npy(f.data(), f.size(), path);
  a.eval();
  return a;
}

namespace {
std::string npy_bytes(const array& in) {
  array a = copy(in);
  a.eval();
  std::string shape = "(";
  for (size_t i = 0; i < a.ndim(); ++i)
    shape += std::to_string(a.shape(i)) + (a.ndim() == 1 ? "," : (i + 1 < a.ndim() ? ", " : ""));
  shape += ")";
  std::string header =
      "{'descr': '" + descr_of(a.dtype()) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>((header.size() >> 8) & 0xff));
  out += header;
  out.append(a.data<char>(), a.nbytes());
  return out;
}

void put16(std::string& s, uint32_t v) {
  s.push_back(static_cast<char>(v & 0xff));
  s.push_back(static_cast<char>((v >> 8) & 0xff));
}
void put32(std::string& s, uint32_t v) {
  put16(s, v & 0xffff);
  put16(s, v >> 16);
}
uint32_t get16(const uint8_t* p) { return p[0] | (p[1] << 8); }
uint32_t get32(const uint8_t* p) { return get16(p) | (get16(p + 2) << 16); }

}  // namespace

void save(const std::string& path, const array& a) { io::write_file_atomic(path, npy_bytes(a)); }

void save_npz(const std::string& path, const ArrayMap& arrays, bool compressed) {
  std::vector<std::string> names;
  for (auto& [k, v] : arrays) names.push_back(k);
  std::sort(names.begin(), names.end());
  std::string out, central;
  uint32_t count = 0;
  for (auto& n : names) {
    std::string file = n + ".npy";
    std::string raw = npy_bytes(arrays.at(n));
    if (raw.size() > 0xffffffffu)
      throw std::invalid_argument("[save_npz] array '" + n + "' is too large for a zip entry");
    uint32_t crc =
        crc32(0, reinterpret_cast<const Bytef*>(raw.data()), static_cast<uInt>(raw.size()));
    std::string stored = raw;
    uint16_t method = 0;
    if (compressed) {
      z_stream zs{};
      deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
      stored.resize(deflateBound(&zs, raw.size()));
      zs.next_in = reinterpret_cast<Bytef*>(raw.data());
      zs.avail_in = static_cast<uInt>(raw.size());
      zs.next_out = reinterpret_cast<Bytef*>(stored.data());
      zs.avail_out = static_cast<uInt>(stored.size());
      deflate(&zs, Z_FINISH);
      stored.resize(zs.total_out);
      deflateEnd(&zs);
      method = 8;
    }
    uint32_t local_offset = static_cast<uint32_t>(out.size());
    put32(out, 0x04034b50);
    put16(out, 20);
    put16(out, 0);
    put16(out, method);
    put16(out, 0);
    put16(out, 0x21);  // DOS time/date: 1980-01-01
    put32(out, crc);
    put32(out, static_cast<uint32_t>(stored.size()));
    put32(out, static_cast<uint32_t>(raw.size()));
    put16(out, static_cast<uint32_t>(file.size()));
    put16(out, 0);
    out += file;
    out += stored;
    put32(central, 0x02014b50);
    put16(central, 20);
    put16(central, 20);
    put16(central, 0);
    put16(central, method);
    put16(central, 0);
    put16(central, 0x21);
    put32(central, crc);
    put32(central, static_cast<uint32_t>(stored.size()));
    put32(central, static_cast<uint32_t>(raw.size()));
    put16(central, static_cast<uint32_t>(file.size()));
    put16(central, 0);
    put16(central, 0);
    put16(central, 0);
    put16(central, 0);
    put32(central, 0);
    put32(central, local_offset);
    central += file;
    ++count;
  }
  uint32_t cd_offset = static_cast<uint32_t>(out.size());
  out += central;
  put32(out, 0x06054b50);
  put16(out, 0);
  put16(out, 0);
  put16(out, count);
  put16(out, count);
  put32(out, static_cast<uint32_t>(central.size()));
  put32(out, cd_offset);
  put16(out, 0);
  io::write_file_atomic(path, out);
}

ArrayMap load_npz(const std::string& path) {
  io::MappedFile f(path);
  const uint8_t* d = f.data();
  size_t size = f.size();
  auto fail = [&](const std::string& what) {
    return std::runtime_error("[load_npz] '" + path + "': " + what);
  };
  if (size < 22) throw fail("too short to be a zip archive");
  // The end-of-central-directory record sits in the last 64 KiB + 22 bytes.
  size_t eocd = std::string::npos;
  for (size_t i = size - 22 + 1; i-- > 0 && size - i <= 65557;) {
    if (get32(d + i) == 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd == std::string::npos) throw fail("no zip end-of-central-directory record (truncated?)");
  uint32_t entries = get16(d + eocd + 10);
  uint32_t cd_size = get32(d + eocd + 12), cd_off = get32(d + eocd + 16);
  if (static_cast<uint64_t>(cd_off) + cd_size > eocd)
    throw fail("central directory lies outside the file");
  ArrayMap out;
  size_t p = cd_off;
  for (uint32_t e = 0; e < entries; ++e) {
    if (p + 46 > eocd || get32(d + p) != 0x02014b50) throw fail("corrupt central directory entry");
    uint32_t method = get16(d + p + 10);
    uint32_t crc = get32(d + p + 16);
    uint32_t csize = get32(d + p + 20), usize = get32(d + p + 24);
    uint32_t nlen = get16(d + p + 28), xlen = get16(d + p + 30), clen = get16(d + p + 32);
    uint32_t local = get32(d + p + 42);
    if (p + 46 + nlen > eocd) throw fail("corrupt central directory entry");
    std::string file(reinterpret_cast<const char*>(d + p + 46), nlen);
    p += 46 + nlen + xlen + clen;
    if (static_cast<uint64_t>(local) + 30 > size || get32(d + local) != 0x04034b50) {
      throw fail("bad local header for '" + file + "'");
    }
    uint64_t data_off =
        static_cast<uint64_t>(local) + 30 + get16(d + local + 26) + get16(d + local + 28);
    if (data_off + csize > size) throw fail("data of '" + file + "' runs past the end of the file");
    std::string raw;
    if (method == 0) {
      if (csize != usize) throw fail("stored entry '" + file + "' has mismatched sizes");
      raw.assign(reinterpret_cast<const char*>(d + data_off), csize);
    } else if (method == 8) {
      raw.resize(usize);
      z_stream zs{};
      inflateInit2(&zs, -15);
      zs.next_in = const_cast<Bytef*>(d + data_off);
      zs.avail_in = csize;
      zs.next_out = reinterpret_cast<Bytef*>(raw.data());
      zs.avail_out = usize;
      int rc = inflate(&zs, Z_FINISH);
      size_t produced = zs.total_out;
      inflateEnd(&zs);
      if (rc != Z_STREAM_END || produced != usize)
        throw fail("cannot inflate '" + file + "' (corrupt data)");
    } else {
      throw fail("entry '" + file + "' uses unsupported compression method " +
                 std::to_string(method));
    }
    if (crc32(0, reinterpret_cast<const Bytef*>(raw.data()), static_cast<uInt>(raw.size())) !=
        crc) {
      throw fail("CRC mismatch in '" + file + "' (corrupt data)");
    }
    std::string key = file.size() > 4 && file.substr(file.size() - 4) == ".npy"
                          ? file.substr(0, file.size() - 4)
                          : file;
    out.insert_or_assign(key, io::parse_npy(reinterpret_cast<const uint8_t*>(raw.data()),
                                            raw.size(), path + ":" + file));
  }
  for (auto& [k, v] : out) v.eval();
  return out;
}

}  // namespace mx

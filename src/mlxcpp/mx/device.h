// Devices and streams. A stream is an ordered queue of work on one device; each
// CPU stream runs on its own worker thread (see scheduler.h).
#pragma once

#include <ostream>
#include <variant>

namespace mx {

struct Device {
  enum class DeviceType { cpu, gpu };
  static constexpr DeviceType cpu = DeviceType::cpu;
  static constexpr DeviceType gpu = DeviceType::gpu;

  DeviceType type;
  int index;
  constexpr Device(DeviceType t, int i = 0) : type(t), index(i) {}
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
};

const Device& default_device();
void set_default_device(const Device& d);
// Whether a backend for the device type was built and a device is present.
bool is_available(const Device& d);

struct Stream {
  int index;
  Device device;
  Stream(int i, Device d) : index(i), device(d) {}
  bool operator==(const Stream& o) const { return index == o.index; }
};

Stream default_stream(Device d);
void set_default_stream(Stream s);
Stream new_stream(Device d);
// Blocks until all work queued on the stream so far has run.
void synchronize(Stream s);
void synchronize();

using StreamOrDevice = std::variant<std::monostate, Stream, Device>;
// The stream an op with this argument runs on.
Stream to_stream(StreamOrDevice s);

std::ostream& operator<<(std::ostream& os, const Device& d);
std::ostream& operator<<(std::ostream& os, const Stream& s);

}  // namespace mx

// Built when the CUDA backend is not: no GPU device exists.
namespace mx {
bool gpu_is_available() { return false; }
}  // namespace mx

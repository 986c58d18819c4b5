#!/bin/bash
# Packs built binaries for a run on the lent GPU machine, which has the CUDA toolkit but none of
# our Debian runtime libraries: tools/gpu/pack.sh ITEM... writes out/pb-main.tar.xz with the
# stripped libmlxcpp, each ITEM (a test name such as mx_test_gpu_quantized, or a path under build/
# such as src/mlxcpp or bench/gpu/mlxcpp_bench_gpu) and, in gpurt/, the shared libraries they
# load that are neither glibc's nor CUDA's. On the device: `source tools/gpu/pb.sh`, then prefix
# our binaries with `L` (carry out/pb-main.tar.xz). The device call copies the working tree too
# (64 MiB in all): tests/data/tokenizers (8 MiB) can be moved aside for a call that needs room.
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/build/src" "$stage/gpurt" out
files=(src/libmlxcpp.so)
for it in "$@"; do
  case $it in */*) files+=("$it") ;; *) files+=("tests/$it") ;; esac
done
for f in "${files[@]}"; do
  mkdir -p "$stage/build/$(dirname "$f")"
  cp -L "build/$f" "$stage/build/$f"
  strip --strip-unneeded "$stage/build/$f" 2>/dev/null || true
done
# The library under its soname (what the binaries ask for), the plain name a link to it.
so=$(readelf -d build/src/libmlxcpp.so | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
if [ -n "$so" ] && [ "$so" != libmlxcpp.so ]; then
  mv "$stage/build/src/libmlxcpp.so" "$stage/build/src/$so"
  ln -s "$so" "$stage/build/src/libmlxcpp.so"
fi
for f in "${files[@]}"; do ldd "build/$f"; done | awk '/=> \//{print $3}' | sort -u |
  grep -v -E '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*|libcuda|libcublas[^/]*|libcudart[^/]*|libnccl[^/]*|libmlxcpp)\.so' |
  while read -r l; do cp -L "$l" "$stage/gpurt/"; done
tar -C "$stage" -cf - build gpurt | xz -T2 -6 >out/pb-main.tar.xz
ls -la out/pb-main.tar.xz

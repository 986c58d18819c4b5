#!/bin/bash
# Builds bench_tokenizer without CMake or the mx core: the lm tokenizer sources only, with
# PCRE2 and utf8proc linked statically, so the binary also runs on a machine without those
# packages. DEPS, when set, is a folder with include/ and lib/ holding pcre2.h, utf8proc.h,
# libpcre2-8.a and libutf8proc.a (for machines without the Debian -dev packages).
# Usage: [DEPS=dir] [JOBS=n] bench/tokenizer/build_standalone.sh OUT_BINARY
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(realpath -m "$1")
OBJ="$OUT.objs"
mkdir -p "$OBJ"
EXTRA_I=()
EXTRA_L=()
if [ -n "${DEPS:-}" ]; then
  EXTRA_I=(-I"$DEPS/include")
  EXTRA_L=(-L"$DEPS/lib")
fi
CXXFLAGS=(-std=c++20 -O3 -march=x86-64-v3 -DNDEBUG -I"$ROOT/src" "${EXTRA_I[@]}")
ls "$ROOT"/src/mlxcpp/lm/tokenizer/*.cpp "$ROOT/bench/tokenizer/bench_tokenizer.cpp" |
  xargs -P "${JOBS:-2}" -I{} sh -c 'g++ "$@" -c {} -o "'"$OBJ"'/$(basename {} .cpp).o"' _ "${CXXFLAGS[@]}"
g++ "$OBJ"/*.o "${EXTRA_L[@]}" -Wl,-Bstatic -lpcre2-8 -lutf8proc -Wl,-Bdynamic \
  -static-libstdc++ -static-libgcc -pthread -o "$OUT"
echo "built $OUT"

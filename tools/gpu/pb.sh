# Sourced on the GPU machine from the repository root (see tools/gpu/pack.sh): unpacks
# out/pb-main.tar.xz over the tree and defines L, which runs a command with our runtime
# libraries first on the library path: `L build/tests/mx_test_gpu_quantized`. PB_LIBS holds the
# path, for a second library tried side by side (LD_LIBRARY_PATH=/tmp/old:$PB_LIBS ...).
tar -xJf out/pb-main.tar.xz
export PB_LIBS=$PWD/build/src:$PWD/gpurt:/usr/local/cuda/lib64
L() { LD_LIBRARY_PATH=$PB_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$@"; }
export -f L

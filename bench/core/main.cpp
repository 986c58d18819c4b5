// mlxcpp_bench_core: run bench/run_core.sh for the table of ratios.
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();

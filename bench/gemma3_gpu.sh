#!/bin/bash
# Gemma 3 4B bf16 on one GPU (issue 5), in one run on the GPU machine: the
# card's device-to-device copy bandwidth and cuBLASLt bf16 GEMM peak
# (bench/gpu), mlxcpp decode at batch 1 (prompt 128, 256 new tokens), prefill
# at 2048 and 8192 tokens, time to first token and peak memory, and Hugging
# Face transformers (eager and sdpa) on the same random checkpoint; with the
# `quant` part also decode of that checkpoint converted to 4 and 8 bits
# (`mlxcpp convert -q`, groups of 64; issue 6). Prints decode as a fraction of
# the bandwidth floor (weight bytes per token over the copy bandwidth) and
# prefill as a fraction of the GEMM peak.
# Usage: bench/gemma3_gpu.sh [build dir]
# Env: DIR (/tmp/mlxcpp-bench), PARTS ("peaks ours quant hf"), RUN (a prefix for our
# binaries, e.g. L on the GPU machine), PY (/usr/bin/python3 for transformers),
# LOG (where the raw JSON lines go; default a temporary file), TRIALS (decode trials, 3),
# HF_ARGS (extra bench/hf_baseline.py flags).
set -eu
B=${1:-build}
BIN=$B/src/mlxcpp
PEAKS=$B/bench/gpu/mlxcpp_bench_gpu
DIR=${DIR:-/tmp/mlxcpp-bench}
PARTS=${PARTS:-peaks ours quant hf}
RUN=${RUN:-}
PY=${PY:-python3}
LOG=${LOG:-$(mktemp)}
CFG=gemma3-4b
MODEL=$DIR/$CFG
has() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if [ ! -f "$MODEL/config.json" ]; then
  t0=$(date +%s)
  $RUN "$BIN" random-model --config $CFG --dtype bf16 --out "$MODEL" >/dev/null
  echo "random-model $CFG bf16 written in $(($(date +%s) - t0)) s" >&2
fi
if has peaks; then
  $RUN "$PEAKS" 2 | sed 's/^/peaks /' >>"$LOG"
fi
if has ours; then
  # Decode: prompt 128, 256 new tokens, 3 trials after a warm-up.
  printf 'ours decode %s\n' "$($RUN "$BIN" benchmark --model "$MODEL" -p 128 -g 256 -n "${TRIALS:-3}" \
    --output json | tail -n 1)" >>"$LOG"
  for T in 2048 8192; do
    printf 'ours prefill %s\n' "$($RUN "$BIN" benchmark --model "$MODEL" -p $T -g 2 -n 2 \
      --prefill-step-size $T --output json | tail -n 1)" >>"$LOG"
  done
fi
if has quant; then
  for BITS in 4 8; do
    QM=$MODEL-q$BITS
    if [ ! -f "$QM/config.json" ]; then
      MLXCPP_DEFAULT_DEVICE=gpu $RUN "$BIN" convert --hf-path "$MODEL" --mlx-path "$QM" -q \
        --q-bits $BITS >/dev/null
    fi
    printf 'ours decode-%s-bit %s\n' $BITS "$($RUN "$BIN" benchmark --model "$QM" -p 128 -g 256 \
      -n "${TRIALS:-3}" --output json | tail -n 1)" >>"$LOG"
  done
fi
if has hf; then
  # shellcheck disable=SC2086
  "$PY" "$(dirname "$0")/hf_baseline.py" "$MODEL" ${HF_ARGS:-} | sed 's/^/hf /' >>"$LOG"
fi

/usr/bin/python3 - "$LOG" "$MODEL/config.json" <<'PY'
import json, sys

rows = [l.split(" ", 1) for l in open(sys.argv[1]) if l.strip()]
cfg = json.load(open(sys.argv[2]))
text = cfg.get("text_config", cfg)
# Parameters of the decoder's matrices: what a prefill token multiplies
# through (2 FLOPs each); the tied embedding counts once, as the LM head.
peaks, ours, hf = [], [], []
for kind, rest in rows:
    if kind == "peaks":
        peaks.append(json.loads(rest))
    elif kind == "ours":
        what, js = rest.split(" ", 1)
        ours.append((what, json.loads(js)))
    elif kind == "hf":
        hf.append(json.loads(rest))
card = next((p["name"] for p in peaks if p["bench"] == "device"), "?")
d2d = next((p["gbs"] for p in peaks if p["bench"] == "d2d_copy"), None)
gemm = max((p["tflops"] for p in peaks if p["bench"] == "gemm_bf16"), default=None)
print(f"card: {card}")
for p in peaks:
    if p["bench"] == "read":
        print(f"  read {p['memory']:<58} first pass {p['first_gbs']:8.1f} GB/s, best {p['gbs']:8.1f} GB/s")
    elif p["bench"] == "gemm_bf16":
        print(f"  cuBLASLt bf16 GEMM {p['shape']:<26} {p['tflops']:7.1f} TFLOP/s")
if d2d:
    print(f"  device-to-device copy {d2d:.1f} GB/s (read + write)")
for what, r in ours:
    wb = r["weight_bytes"]
    n_params = wb / 2
    if what.startswith("decode"):
        floor = d2d * 1e9 / wb if d2d else r["floor_tps"]
        kind = what[len("decode-"):] + " " if what != "decode" else ""
        print(f"mlxcpp {kind}decode (p {r['prompt_tokens']}, g {r['generation_tokens']}): "
              f"{r['generation_tps']:.1f} tok/s, {wb / 1e9:.2f} GB of weights per token, floor "
              f"{floor:.1f} tok/s -> {r['generation_tps'] / floor:.1%} of the floor; ttft "
              f"{r['ttft_s'] * 1e3:.1f} ms, peak {r['peak_memory_gb']:.2f} GB")
    else:
        flops = 2 * n_params * r["prompt_tps"]
        pct = f" -> {flops / (gemm * 1e12):.1%} of the GEMM peak ({gemm:.0f} TFLOP/s)" if gemm else ""
        print(f"mlxcpp prefill {r['prompt_tokens']}: {r['prompt_tps']:.0f} tok/s "
              f"({flops / 1e12:.0f} TFLOP/s in weight GEMMs){pct}; ttft {r['ttft_s'] * 1e3:.1f} ms, "
              f"peak {r['peak_memory_gb']:.2f} GB")
for r in hf:
    print("transformers " + ", ".join(f"{k}={v}" for k, v in r.items() if k != "impl"))
PY

#!/usr/bin/env bash
# Serving benchmark of `mlxcpp server` on one GPU (issue 7): makes a random Gemma 3 checkpoint,
# starts the server with the GPU as its default device, waits for /health, runs
# bench/server_bench.py (Python standard library only) at several concurrencies, prints the
# table and stops the server.
#
# On the GPU host (our binaries need the Debian runtime libraries that `L` adds; python3 must
# run without them):
#   source tools/gpu/pb.sh; L bash bench/server_gpu.sh
# Knobs (environment): MLXCPP_BIN (build/src/mlxcpp), CONFIG (gemma3-4b), DTYPE (bf16),
# MODEL_DIR (/tmp/mlxcpp-bench-$CONFIG-$DTYPE; reused when it already holds config.json),
# DEVICE (gpu; cpu for a check on a machine without one), CONCURRENCY (1,8,32,64),
# PROMPT_TOKENS (64), GEN_TOKENS (64), TIME_BUDGET (seconds for the client, 0: none; default 420),
# PROMPT_CONCURRENCY (8), REPEAT (bursts per concurrency, the median reported; 1), SERVER_ARGS
# (extra server flags), OUT_DIR (where logs go; $OUT or /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${MLXCPP_BIN:-build/src/mlxcpp}
CONFIG=${CONFIG:-gemma3-4b}
DTYPE=${DTYPE:-bf16}
MODEL_DIR=${MODEL_DIR:-/tmp/mlxcpp-bench-$CONFIG-$DTYPE}
DEVICE=${DEVICE:-gpu}
CONCURRENCY=${CONCURRENCY:-1,8,32,64}
PROMPT_TOKENS=${PROMPT_TOKENS:-64}
GEN_TOKENS=${GEN_TOKENS:-64}
TIME_BUDGET=${TIME_BUDGET:-420}
PROMPT_CONCURRENCY=${PROMPT_CONCURRENCY:-8}
OUT_DIR=${OUT_DIR:-${OUT:-/tmp}}
PY="env -u LD_LIBRARY_PATH python3"

max_c=$(echo "$CONCURRENCY" | tr ',' '\n' | sort -n | tail -1)
mkdir -p "$OUT_DIR"
log="$OUT_DIR/server_bench_server.log"

if [ ! -f "$MODEL_DIR/config.json" ]; then
  echo "== random $CONFIG $DTYPE checkpoint -> $MODEL_DIR"
  rm -rf "$MODEL_DIR"
  t0=$(date +%s)
  "$BIN" random-model --config "$CONFIG" --dtype "$DTYPE" --out "$MODEL_DIR"
  echo "   made in $(( $(date +%s) - t0 )) s"
fi

echo "== server on $DEVICE: --decode-concurrency $max_c --prompt-concurrency $PROMPT_CONCURRENCY"
# shellcheck disable=SC2086
MLXCPP_DEFAULT_DEVICE=$DEVICE "$BIN" server --model "$MODEL_DIR" --port 0 \
  --decode-concurrency "$max_c" --prompt-concurrency "$PROMPT_CONCURRENCY" \
  --prompt-cache-size 0 --max-tokens "$GEN_TOKENS" ${SERVER_ARGS:-} >"$log" 2>&1 &
server_pid=$!
stop_server() {
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
}
trap stop_server EXIT

# The port (chosen by the server) from its first line, then /health.
port=""
t0=$(date +%s)
while [ -z "$port" ]; do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server exited:"; cat "$log"; exit 1
  fi
  if [ $(( $(date +%s) - t0 )) -gt 300 ]; then
    echo "the server did not start in 300 s:"; cat "$log"; exit 1
  fi
  port=$(sed -n 's|.* on http://[0-9.]*:\([0-9]*\)/.*|\1|p' "$log" | head -1)
  [ -n "$port" ] || sleep 0.5
done
$PY - "$port" <<'PYEOF'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/health"
for _ in range(600):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit(f"{url} did not answer")
PYEOF
echo "   up on port $port after $(( $(date +%s) - t0 )) s (log: $log)"

status=0
$PY bench/server_bench.py --url "http://127.0.0.1:$port" --model "$MODEL_DIR" \
  --concurrency "$CONCURRENCY" --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" \
  --time-budget "$TIME_BUDGET" --repeat "${REPEAT:-1}" --json "$OUT_DIR/server_bench.json" || status=$?
$PY - "$port" <<'PYEOF' || true
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=5) as r:
    h = json.load(r)
print("server after the run: " + ", ".join(f"{k} {h[k]}" for k in
      ("completed", "cancelled", "decode_steps", "prefill_passes", "prefill_chunks",
       "active_memory", "cache_memory") if k in h))
PYEOF
stop_server
trap - EXIT
echo "== server log (last lines)"
tail -5 "$log"
exit $status

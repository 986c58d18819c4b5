#!/usr/bin/env bash
# End-to-end checks of the mlxcpp commands on the trained echo model
# (models/gemma3-tiny-echo). Expected values come from transformers
# (tests/data/gemma3/copy_trained/reference.json) and from jinja2 + the echo
# tokenizer's Python encoder (cli_reference.json, tools/reference/echo_cli_refs.py).
#
#   run_cli_tests.sh <mlxcpp binary> <repo root> <check>
#
# Each check is its own ctest entry (tests/CMakeLists.txt); `list` prints them.
set -u

BIN=$1
ROOT=$2
CHECK=$3
PY=/usr/bin/python3
MODEL=models/gemma3-tiny-echo  # relative: prompt caches record the model as given
REF=$ROOT/tests/data/gemma3/copy_trained/reference.json
CLIREF=$ROOT/tests/data/gemma3/copy_trained/cli_reference.json
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$ROOT" || exit 1

fail() {
  echo "FAIL [$CHECK]: $*" >&2
  exit 1
}

# run <name> <args...>: runs the binary; stdout, stderr and exit code go to $TMP/<name>.*
run() {
  local name=$1
  shift
  "$BIN" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null
  echo $? >"$TMP/$name.rc"
}

# run_ok <name> <args...>: the command must succeed.
run_ok() {
  run "$@"
  local rc
  rc=$(cat "$TMP/$1.rc")
  if [ "$rc" != 0 ]; then
    cat "$TMP/$1.err" >&2
    fail "'$*' exited $rc"
  fi
}

# py <python code>: runs with j_<name> = the last stdout line of run <name> as JSON
# (for every run so far), r = reference.json, c = cli_reference.json.
py() {
  "$PY" - "$TMP" "$REF" "$CLIREF" <<EOF || fail "python check failed"
import json, os, sys
tmp, r, c = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
def j(name):
    lines = open(os.path.join(tmp, name + ".out")).read().strip().splitlines()
    assert lines, name + ": no output"
    return json.loads(lines[-1])
def until_eot(ids):
    return ids[:ids.index(5) + 1] if 5 in ids else ids
$1
EOF
}

# expect_error <name> <text the message must contain> <args...>: exit code 1
# (an error, not a signal), exactly one line on stderr that names the cause.
expect_error() {
  local name=$1 needle=$2
  shift 2
  run "$name" "$@"
  local rc lines
  rc=$(cat "$TMP/$name.rc")
  lines=$(wc -l <"$TMP/$name.err")
  echo "[$name] exit $rc: $(cat "$TMP/$name.err")"
  [ "$rc" = 1 ] || fail "$name: exit code $rc, expected 1"
  [ "$lines" = 1 ] || fail "$name: $lines lines on stderr, expected one"
  grep -qF -- "$needle" "$TMP/$name.err" || fail "$name: the message does not contain '$needle'"
}

# A copy of the echo model in $TMP/<name> to damage.
copy_model() {
  mkdir -p "$TMP/$1"
  cp "$MODEL"/*.json "$MODEL"/model.safetensors "$TMP/$1/"
}

case "$CHECK" in
generate_json)
  # The held-out strings: chat-templated prompt ids as transformers', the echo as text.
  for i in 0 1 2; do
    s=$("$PY" -c "import json; print(json.load(open('$REF'))['strings'][$i])")
    run_ok gen$i generate --model "$MODEL" --prompt "$s" --output json
  done
  py "
for i in range(3):
    g = j('gen%d' % i)
    assert g['prompt_tokens'] == r['prompt_tokens'][i], g['prompt_tokens']
    assert g['text'] == r['strings'][i], g['text']
    assert g['tokens'] == until_eot(r['greedy'][i]), g['tokens']
    assert g['finish_reason'] == 'stop', g['finish_reason']
    assert len(g['logprobs']) == len(g['tokens'])
    assert all(isinstance(v, float) and v <= 0 for v in g['logprobs']), g['logprobs']
    for k in ('prompt_tps', 'generation_tps', 'peak_memory_gb'):
        assert isinstance(g[k], float) and g[k] > 0, (k, g[k])
"
  ;;
generate_text_output)
  s=$("$PY" -c "import json; print(json.load(open('$REF'))['strings'][1])")
  run_ok quiet generate --model "$MODEL" --prompt "$s" --verbose False
  [ "$(cat "$TMP/quiet.out")" = "$s" ] || fail "--verbose False printed '$(cat "$TMP/quiet.out")'"
  [ "$(wc -l <"$TMP/quiet.out")" = 1 ] || fail "--verbose False printed more than the text"
  run_ok verbose generate --model "$MODEL" --prompt "$s"
  grep -qxF "$s" "$TMP/verbose.out" || fail "verbose output lacks the reply"
  for k in "Prompt: 48 tokens" "Generation: 33 tokens" "Peak memory: "; do
    grep -qF "$k" "$TMP/verbose.out" || fail "verbose output lacks '$k'"
  done
  ;;
generate_prompt_tokens)
  ids=$("$PY" -c "import json; print(','.join(map(str, json.load(open('$REF'))['prompt_tokens'][2])))")
  run_ok toks generate --model "$MODEL" --prompt-tokens "$ids" --output json
  run_ok short generate --model "$MODEL" --prompt-tokens 1,2,3 -m 4 --output json
  py "
g = j('toks')
assert g['prompt_tokens'] == r['prompt_tokens'][2]
assert g['tokens'] == until_eot(r['greedy'][2]) and g['text'] == r['strings'][2], g
s = j('short')
assert s['prompt_tokens'] == [1, 2, 3] and len(s['tokens']) <= 4, s
"
  ;;
generate_stdin)
  s=$("$PY" -c "import json; print(json.load(open('$REF'))['strings'][0])")
  printf '%s' "$s" | "$BIN" generate --model "$MODEL" --prompt - --output json >"$TMP/stdin.out" ||
    fail "--prompt - failed"
  py "
g = j('stdin')
assert g['prompt_tokens'] == r['prompt_tokens'][0] and g['text'] == r['strings'][0], g
"
  ;;
generate_ignore_chat_template)
  run_ok raw generate --model "$MODEL" --prompt "abc def" --ignore-chat-template -m 3 --output json
  py "
g = j('raw')
assert g['prompt_tokens'] == c['raw']['ids'], g['prompt_tokens']
assert len(g['tokens']) <= 3
"
  ;;
generate_system_prompt)
  s=$("$PY" -c "import json; print(json.load(open('$CLIREF'))['system']['user'])")
  run_ok sys generate --model "$MODEL" --system-prompt "be brief" --prompt "$s" -m 8 --output json
  py "
g = j('sys')
assert g['prompt_tokens'] == c['system']['ids'], g['prompt_tokens']
"
  ;;
generate_max_kv_size)
  s=$("$PY" -c "import json; print(json.load(open('$REF'))['strings'][1])")
  run_ok kv generate --model "$MODEL" --prompt "$s" --max-kv-size 8 -m 60 --output json
  py "
g = j('kv')
assert g['prompt_tokens'] == r['prompt_tokens'][1]
assert 1 <= len(g['tokens']) <= 60 and g['finish_reason'] in ('stop', 'length'), g
"
  ;;
generate_seeded_sampling)
  for n in a b; do
    run_ok seed_$n generate --model "$MODEL" --prompt "hello there" --temp 0.7 --seed 3 -m 20 --output json
  done
  run_ok hot generate --model "$MODEL" --prompt "hello there" --temp 5 --seed 3 -m 30 --output json
  run_ok hot2 generate --model "$MODEL" --prompt "hello there" --temp 5 --seed 4 -m 30 --output json
  py "
a, b = j('seed_a'), j('seed_b')
assert a['tokens'] == b['tokens'] and a['text'] == b['text'], (a, b)
assert j('hot')['tokens'] != j('hot2')['tokens']
"
  ;;
chat)
  printf 'abc def\nh\nr\nxyz\nq\n' | "$BIN" chat --model "$MODEL" >"$TMP/chat.out" 2>"$TMP/chat.err"
  rc=$?
  [ "$rc" = 0 ] || fail "chat exited $rc: $(cat "$TMP/chat.err")"
  cat "$TMP/chat.out"
  grep -qxF ">> abc def" "$TMP/chat.out" || fail "no echo of 'abc def'"
  # 'r' prints nothing (as mlx_lm.chat), so the next prompt follows on the same line.
  grep -qx ">> >> xyz" "$TMP/chat.out" || fail "no echo of 'xyz' after the reset"
  [ "$(grep -c "^- 'q' to exit" "$TMP/chat.out")" = 2 ] || fail "help not printed at start and on 'h'"
  ;;
perplexity_tokens)
  ids=$("$PY" -c "import json; print(','.join(map(str, json.load(open('$REF'))['prompt_tokens'][0])))")
  run_ok ppl_default perplexity --model "$MODEL" --tokens "$ids" --output json
  run_ok ppl_1 perplexity --model "$MODEL" --tokens "$ids" --prefill-step-size 1 --output json
  run_ok ppl_7 perplexity --model "$MODEL" --tokens "$ids" --prefill-step-size 7 --output json
  run_ok ppl_text perplexity --model "$MODEL" --tokens "$ids"
  py "
import math
for n in ('ppl_default', 'ppl_1', 'ppl_7'):
    g = j(n)
    assert abs(g['nll'] - r['nll']) <= 1e-5 * abs(r['nll']), (n, g['nll'], r['nll'])
    assert abs(g['ppl'] - math.exp(r['nll'])) <= 1e-4 * math.exp(r['nll']), (n, g['ppl'])
    assert g['tokens'] == len(r['prompt_tokens'][0]) - 1 and g['sequences'] == 1, g
"
  grep -qF "Perplexity: " "$TMP/ppl_text.out" || fail "text output lacks the perplexity"
  ;;
perplexity_data)
  # Text whose encoding (with <bos>) is transformers' prompt 0: the same NLL.
  "$PY" - "$REF" "$TMP" <<'EOF' || fail "cannot write the data files"
import json, sys
r = json.load(open(sys.argv[1]))
text = "<start_of_turn>user\n" + r["strings"][0] + "<end_of_turn>\n<start_of_turn>model\n"
open(sys.argv[2] + "/doc.txt", "w").write(text)
open(sys.argv[2] + "/doc.jsonl", "w").write(json.dumps({"text": text}) + "\n\n")
EOF
  run_ok ppl_txt perplexity --model "$MODEL" --data "$TMP/doc.txt" --output json
  run_ok ppl_jsonl perplexity --model "$MODEL" --data "$TMP/doc.jsonl" --output json
  py "
for n in ('ppl_txt', 'ppl_jsonl'):
    g = j(n)
    assert g['tokens'] == len(r['prompt_tokens'][0]) - 1, g
    assert abs(g['nll'] - r['nll']) <= 1e-5 * abs(r['nll']), (n, g['nll'], r['nll'])
"
  ;;
cache_prompt)
  head=$("$PY" -c "import json; print(json.load(open('$CLIREF'))['cache_prompt']['head'])")
  rest=$("$PY" -c "import json; print(json.load(open('$CLIREF'))['cache_prompt']['rest'])")
  run_ok save cache-prompt --model "$MODEL" --prompt "$head" --prompt-cache-file "$TMP/c.safetensors"
  n=$("$PY" -c "import json; print(len(json.load(open('$CLIREF'))['cache_prompt']['cached_ids']))")
  grep -qF "Saved the cache of $n prompt tokens" "$TMP/save.out" || fail "cache-prompt: $(cat "$TMP/save.out")"
  run_ok cont generate --model "$MODEL" --prompt-cache-file "$TMP/c.safetensors" --prompt "$rest" --output json
  # The model comes from the cache's metadata when --model is not given.
  run_ok cont2 generate --prompt-cache-file "$TMP/c.safetensors" --prompt "$rest" --output json
  # The same folder spelled as an absolute path is the same model.
  run_ok cont3 generate --model "$ROOT/$MODEL" --prompt-cache-file "$TMP/c.safetensors" --prompt "$rest" --output json
  py "
for n in ('cont', 'cont2', 'cont3'):
    g = j(n)
    assert g['prompt_tokens'] == c['cache_prompt']['suffix_ids'], g['prompt_tokens']
    assert g['text'] == c['cache_prompt']['reply'], g['text']
    assert g['tokens'] == until_eot(r['greedy'][0]) and g['finish_reason'] == 'stop', g
"
  ;;
benchmark)
  run_ok bench benchmark --model "$MODEL" -p 16 -g 8 -n 1 --output json
  py "
g = j('bench')
assert g['prompt_tokens'] == 16 and g['generation_tokens'] == 8 and len(g['trials']) == 1, g
for k in ('prompt_tps', 'generation_tps', 'peak_memory_gb', 'read_gbs', 'floor_tps', 'decode_floor_ratio'):
    assert isinstance(g[k], float) and g[k] > 0, (k, g[k])
# float32 parameters of the README's count (tied embeddings stored once).
assert g['weight_bytes'] == 1034624 * 4, g['weight_bytes']
"
  ;;
error_missing_model)
  expect_error e "does not exist" generate --model "$TMP/nowhere" --prompt hi
  ;;
error_no_config)
  mkdir -p "$TMP/noconf" && cp "$MODEL/tokenizer.json" "$TMP/noconf/"
  expect_error e "no config.json" generate --model "$TMP/noconf" --prompt hi
  ;;
error_corrupt_config)
  copy_model bad && printf '{"model_type": "gemma3_text", ' >"$TMP/bad/config.json"
  expect_error e "config.json: invalid JSON" generate --model "$TMP/bad" --prompt hi
  ;;
error_unknown_model_type)
  copy_model bad && "$PY" - "$TMP/bad/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["model_type"] = "llama9"; json.dump(c, open(sys.argv[1], "w"))
EOF
  expect_error e "llama9" generate --model "$TMP/bad" --prompt hi
  ;;
error_truncated_weights)
  copy_model bad && truncate -s 100000 "$TMP/bad/model.safetensors"
  expect_error e "model.safetensors" generate --model "$TMP/bad" --prompt hi
  ;;
error_corrupt_weights)
  copy_model bad && printf '\xff\xff\xff\xff\xff\xff\xff\x7fgarbage' >"$TMP/bad/model.safetensors"
  expect_error e "model.safetensors" generate --model "$TMP/bad" --prompt hi
  copy_model bad2 && "$PY" - "$TMP/bad2/model.safetensors" <<'EOF'
import struct, sys
p = sys.argv[1]; b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
open(p, "wb").write(b[:8] + b"{" + b"x" * (n - 1) + b[8 + n:])
EOF
  expect_error e2 "model.safetensors" generate --model "$TMP/bad2" --prompt hi
  ;;
error_wrong_shape)
  # model.norm.weight [128] relabelled [64, 2]: same bytes, wrong shape.
  copy_model bad && "$PY" - "$TMP/bad/model.safetensors" <<'EOF'
import json, struct, sys
p = sys.argv[1]; b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h["model.norm.weight"]["shape"] = [64, 2]
hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
EOF
  expect_error e "model.norm.weight" generate --model "$TMP/bad" --prompt hi
  grep -qF "128" "$TMP/e.err" && grep -qF "64" "$TMP/e.err" || fail "the message does not name both shapes"
  ;;
error_model_files)
  copy_model tok && printf '{"model": ' >"$TMP/tok/tokenizer.json"
  expect_error e "tokenizer.json" generate --model "$TMP/tok" --prompt hi
  copy_model gen && printf '{' >"$TMP/gen/generation_config.json"
  expect_error e2 "generation_config.json" generate --model "$TMP/gen" --prompt hi
  copy_model now && rm "$TMP/now/model.safetensors"
  expect_error e3 "no weights" generate --model "$TMP/now" --prompt hi
  copy_model field && "$PY" - "$TMP/field/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["hidden_size"] = "big"; json.dump(c, open(sys.argv[1], "w"))
EOF
  expect_error e4 "field/config.json: field 'hidden_size' must be an integer" generate --model "$TMP/field" --prompt hi
  copy_model vocab && "$PY" - "$TMP/vocab/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["vocab_size"] = 100; json.dump(c, open(sys.argv[1], "w"))
EOF
  expect_error e5 "'model.embed_tokens.weight' has shape [384, 128], expected [100, 128]" generate --model "$TMP/vocab" --prompt hi
  ;;
error_bad_options)
  # Option values the commands reject before or right after loading the model.
  expect_error e "--chat-template-config: not JSON" generate --model "$MODEL" --chat-template-config notjson
  expect_error e2 "--chat-template-config: expected a JSON object" chat --model "$MODEL" --chat-template-config '[1]'
  expect_error e3 "--stop: stop strings must not be empty" generate --model "$MODEL" --stop ""
  expect_error e4 "the folder $TMP/nowhere does not exist" cache-prompt --model "$MODEL" --prompt abc --prompt-cache-file "$TMP/nowhere/c.safetensors"
  expect_error e5 "--data $TMP is not a file" perplexity --model "$MODEL" --data "$TMP"
  : >"$TMP/empty.txt"
  expect_error e6 "holds no text" perplexity --model "$MODEL" --data "$TMP/empty.txt"
  expect_error e7 "exceed the model's context of 512" benchmark --model "$MODEL" -p 600 -g 8 -n 1
  expect_error e8 "temp must be >= 0" generate --model "$MODEL" --temp -1
  expect_error e9 "--verbose: expected True or False" generate --model "$MODEL" --verbose maybe
  expect_error e10 "logit_bias: token id 999" generate --model "$MODEL" --logit-bias '{"999": 5}'
  # CLI11 rejects out-of-range integers with its own exit code (105) and the range.
  run r generate --model "$MODEL" --max-kv-size 0
  rc=$(cat "$TMP/r.rc")
  [ "$rc" != 0 ] && [ "$rc" -lt 128 ] || fail "--max-kv-size 0: exit code $rc"
  grep -qF "not in range 1 to 2147483647" "$TMP/r.err" || fail "--max-kv-size 0: $(cat "$TMP/r.err")"
  ;;
error_prompt_too_long)
  copy_model short && "$PY" - "$TMP/short/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["max_position_embeddings"] = 16; json.dump(c, open(sys.argv[1], "w"))
EOF
  expect_error e "max_position_embeddings" generate --model "$TMP/short" --prompt "a prompt longer than sixteen tokens"
  ids=$(seq -s, 10 40)
  expect_error p "context of 16" perplexity --model "$TMP/short" --tokens "$ids" --sequence-length 31
  ;;
error_prompt_tokens)
  expect_error e "'x' is not a token id" generate --model "$MODEL" --prompt-tokens 1,x,3
  expect_error e2 "384" generate --model "$MODEL" --prompt-tokens 1,384
  expect_error e3 "-5" generate --model "$MODEL" --prompt-tokens 1,-5
  expect_error p "384" perplexity --model "$MODEL" --tokens 1,2,999
  ;;
error_missing_data)
  expect_error e "$TMP/none.txt" perplexity --model "$MODEL" --data "$TMP/none.txt"
  printf '{"text": "ok"}\nnot json\n' >"$TMP/bad.jsonl"
  expect_error e2 "line 2" perplexity --model "$MODEL" --data "$TMP/bad.jsonl"
  ;;
error_prompt_cache_file)
  expect_error e "$TMP/none.safetensors: no such file" generate --model "$MODEL" --prompt-cache-file "$TMP/none.safetensors" --prompt hi
  run_ok save cache-prompt --model "$MODEL" --prompt "abc" --prompt-cache-file "$TMP/c.safetensors"
  copy_model other
  expect_error e3 "was made for model" generate --model "$TMP/other" --prompt-cache-file "$TMP/c.safetensors" --prompt hi
  printf 'not a cache' >"$TMP/bad.safetensors"
  expect_error e2 "$TMP/bad.safetensors" generate --model "$MODEL" --prompt-cache-file "$TMP/bad.safetensors" --prompt hi
  # A safetensors file that is not a prompt cache (the model's weights).
  expect_error e4 "model.safetensors" generate --model "$MODEL" --prompt-cache-file "$MODEL/model.safetensors" --prompt hi
  expect_error e5 "--model is required" generate --prompt hi
  ;;
error_unknown_flag)
  run e generate --model "$MODEL" --no-such-flag
  rc=$(cat "$TMP/e.rc")
  echo "exit $rc: $(cat "$TMP/e.err")"
  [ "$rc" != 0 ] && [ "$rc" -lt 128 ] || fail "exit code $rc"
  grep -qF -- "--no-such-flag" "$TMP/e.err" || fail "the message does not name the flag"
  ;;
*)
  fail "unknown check '$CHECK'"
  ;;
esac
echo "PASS [$CHECK]"

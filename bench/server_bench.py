#!/usr/bin/env python3
"""Serving benchmark client for a running `mlxcpp server` (Python standard library only).

Measures aggregate generated tokens/s and time to first token (TTFT) at several concurrencies.
Each client thread streams one /v1/completions request (server-sent events) with its own random
prompt of --prompt-tokens ids and exactly --gen-tokens generated tokens: the model's
end-of-sequence ids are masked with logit_bias so random models also run to length, and
logprobs=0 makes every token its own event, so the first event marks the first token.

usage: python3 bench/server_bench.py --url http://127.0.0.1:8080 --model MODEL_DIR
         [--concurrency 1,8,32,64] [--prompt-tokens 64] [--gen-tokens 64] [--repeat N]
         [--time-budget SECONDS] [--json OUT.json]

Aggregate tok/s counts the generated tokens of a burst over its wall time, prefill included;
per-request tok/s is (tokens - 1) / (time after the first token). With --time-budget, a burst
still running when the budget is spent is stopped (its clients disconnect, which cancels their
generations) and reported as incomplete; later bursts are skipped. With --repeat N, each
concurrency runs N bursts in turn and the row is the burst of median aggregate tok/s, followed by
every burst's aggregate tok/s (the first burst of a level meets batch sizes the server has not run
yet; a single burst's number moves by ±15 % on a GPU from run to run).
"""

import argparse
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def model_info(model_dir):
    config = read_json(os.path.join(model_dir, "config.json"))
    if not config:
        sys.exit(f"server_bench: no readable config.json in {model_dir}")
    text = config.get("text_config", config)
    # Gemma 3's published multimodal configs leave the text vocabulary at
    # Gemma3TextConfig's default (262208 rows).
    vocab = text.get("vocab_size") or config.get("vocab_size")
    if vocab is None and str(config.get("model_type", "")).startswith("gemma3"):
        vocab = 262208
    if not vocab:
        sys.exit(f"server_bench: no vocab_size in {model_dir}/config.json")
    eos = []
    for name in ("config.json", "generation_config.json"):
        e = read_json(os.path.join(model_dir, name)).get("eos_token_id")
        if isinstance(e, int):
            eos.append(e)
        elif isinstance(e, list):
            eos.extend(e)
    return vocab, sorted(set(eos))


class Result:
    def __init__(self):
        self.ttft = None  # seconds
        self.total = None
        self.tokens = 0
        self.error = None


def one_request(host, port, body, deadline, result):
    t0 = time.perf_counter()
    stage, events = "connect", 0
    left = deadline - time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=None if left == float("inf") else max(1.0, left))
    try:
        conn.request("POST", "/v1/completions", body=body,
                     headers={"Content-Type": "application/json"})
        stage = "response headers"
        resp = conn.getresponse()
        stage = "events"
        if resp.status != 200:
            result.error = f"HTTP {resp.status}: {resp.read(2000).decode(errors='replace')}"
            return
        for raw in resp:
            if time.monotonic() > deadline:
                result.error = "stopped at the time budget"
                result.total = time.perf_counter() - t0
                return
            line = raw.decode("utf-8", errors="replace").strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            event = json.loads(data)
            events += 1
            if "error" in event:
                result.error = event["error"].get("message", str(event["error"]))
                return
            if event.get("usage"):
                result.tokens = event["usage"]["completion_tokens"]
            elif event.get("choices"):
                choice = event["choices"][0]
                n = len((choice.get("logprobs") or {}).get("tokens") or [])
                if result.ttft is None and (n or choice.get("text")):
                    result.ttft = time.perf_counter() - t0
                result.tokens += n
        result.total = time.perf_counter() - t0
    except (OSError, http.client.HTTPException, ValueError) as e:
        result.error = (f"{type(e).__name__}: {e} (at {stage}, after {events} events, "
                        f"{time.perf_counter() - t0:.1f} s)")
    finally:
        conn.close()


def burst(host, port, bodies, deadline):
    results = [Result() for _ in bodies]
    threads = [threading.Thread(target=one_request, args=(host, port, b, deadline, r), daemon=True)
               for b, r in zip(bodies, results)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - t0


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--model", required=True, help="the served model's folder (vocabulary, EOS ids)")
    ap.add_argument("--concurrency", default="1,8,32,64")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=1, help="requests run alone before measuring")
    ap.add_argument("--repeat", type=int, default=1,
                    help="bursts per concurrency; the row is the median one")
    ap.add_argument("--time-budget", type=float, default=0, help="seconds for everything (0: none)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args()
    if args.repeat < 1:
        sys.exit("server_bench: --repeat must be at least 1")

    url = urllib.parse.urlparse(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    levels = [int(c) for c in args.concurrency.split(",") if c]
    vocab, eos = model_info(args.model)
    rng = random.Random(args.seed)
    start = time.monotonic()
    deadline = start + args.time_budget if args.time_budget > 0 else float("inf")

    def body(gen_tokens=args.gen_tokens):
        # Ids from the middle of the vocabulary: ordinary text pieces, no special tokens (the
        # first and last 1000 ids, or quarter of a small vocabulary, are left out).
        edge = min(1000, vocab // 4)
        prompt = [rng.randrange(edge, vocab - edge) for _ in range(args.prompt_tokens)]
        return json.dumps({"prompt": prompt, "max_tokens": gen_tokens, "stream": True,
                           "logprobs": 0, "logit_bias": {str(e): -100 for e in eos},
                           "stream_options": {"include_usage": True}})

    for _ in range(args.warmup):
        results, _ = burst(host, port, [body(min(8, args.gen_tokens))], deadline)
        if results[0].error:
            sys.exit(f"server_bench: the warm-up request failed: {results[0].error}")

    print(f"model {args.model}, prompt {args.prompt_tokens} tokens, "
          f"{args.gen_tokens} generated tokens per request")
    runs_col = args.repeat > 1
    print("| concurrency | generated tokens | wall s | aggregate tok/s | per-request tok/s "
          "| TTFT p50 ms | TTFT max ms | errors |" + (" bursts' tok/s |" if runs_col else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if runs_col else ""))
    sys.stdout.flush()
    rows = []
    def measure(c):
        results, wall = burst(host, port, [body() for _ in range(c)], deadline)
        # Requests stopped at the time budget count the tokens they had received.
        stopped = [r for r in results if r.error == "stopped at the time budget"]
        errors = [r.error for r in results if r.error and r not in stopped]
        ok = [r for r in results if r not in stopped and not r.error and r.ttft is not None]
        tokens = sum(r.tokens for r in ok + stopped)
        per = [(r.tokens - 1) / (r.total - r.ttft) for r in ok if r.tokens > 1 and r.total > r.ttft]
        ttft = [r.ttft * 1000 for r in ok + stopped if r.ttft is not None]
        row = {"concurrency": c, "generated_tokens": tokens, "wall_s": wall,
               "aggregate_tok_s": tokens / wall if wall > 0 else 0.0,
               "per_request_tok_s": sum(per) / len(per) if per else 0.0,
               "ttft_p50_ms": percentile(ttft, 0.5) if ttft else None,
               "ttft_max_ms": max(ttft) if ttft else None, "errors": len(errors),
               "stopped_at_budget": len(stopped), "first_error": errors[0] if errors else None}
        return row

    for c in levels:
        if time.monotonic() > deadline:
            print(f"| {c} | skipped: time budget spent | | | | | | |")
            continue
        bursts = []
        for _ in range(args.repeat):
            if bursts and time.monotonic() > deadline:
                break
            bursts.append(measure(c))
        ranked = sorted(bursts, key=lambda r: r["aggregate_tok_s"])
        row = dict(ranked[(len(ranked) - 1) // 2])
        # Every burst's errors count; the row's other numbers are the median burst's.
        row["errors"] = sum(r["errors"] for r in bursts)
        row["stopped_at_budget"] = sum(r["stopped_at_budget"] for r in bursts)
        row["bursts_tok_s"] = [r["aggregate_tok_s"] for r in bursts]
        errors = [r["first_error"] for r in bursts if r["first_error"]]
        stopped = row["stopped_at_budget"]
        tokens, wall = row["generated_tokens"], row["wall_s"]
        rows.append(row)
        fmt = lambda v: "-" if v is None else f"{v:.0f}"
        runs = (" " + " / ".join(f"{t:.0f}" for t in row["bursts_tok_s"]) + " |") if runs_col else ""
        print(f"| {c} | {tokens} | {wall:.2f} | {row['aggregate_tok_s']:.1f} | "
              f"{row['per_request_tok_s']:.1f} | {fmt(row['ttft_p50_ms'])} | "
              f"{fmt(row['ttft_max_ms'])} | {row['errors']}"
              f"{f' ({stopped} stopped at the time budget)' if stopped else ''} |{runs}")
        if errors:
            print(f"  first error: {errors[0]}", file=sys.stderr)
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"model": args.model, "prompt_tokens": args.prompt_tokens,
                       "gen_tokens": args.gen_tokens, "rows": rows}, f, indent=1)
    return 0 if rows and all(r["errors"] == 0 and not r["stopped_at_budget"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

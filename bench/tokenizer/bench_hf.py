#!/usr/bin/env python3
"""Encode throughput of HF `tokenizers` (Rust) on one thread, for comparison with
bench_tokenizer (C++). Usage: bench_hf.py TOKENIZER_JSON CORPUS_FILE [REPEATS]
Prints one JSON line: MB/s, token count and a checksum of the ids (to confirm both produce the
same ids)."""
import json
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402


def main():
    tok = Tokenizer.from_file(sys.argv[1])
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    with open(sys.argv[2], encoding="utf-8", newline="") as f:
        docs = f.read().split("\n\x1e\n")
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    best = float("inf")
    count = checksum = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        encs = [tok.encode(d, add_special_tokens=False) for d in docs]
        best = min(best, time.perf_counter() - t0)
    for e in encs:
        for i in e.ids:
            checksum = (checksum * 1000003 + i) % (1 << 61)
        count += len(e.ids)
    print(json.dumps({"impl": "hf_tokenizers", "mb_per_s": nbytes / 1e6 / best, "seconds": best,
                      "bytes": nbytes, "tokens": count, "checksum": checksum}))


if __name__ == "__main__":
    main()

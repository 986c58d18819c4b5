#!/usr/bin/env python3
"""Writes the tokenizer benchmark text: >= 10 MB of mixed documents (English prose, code,
multilingual text, emoji, numbers, whitespace runs), deterministic (seeded), separated by
"\\n\\x1e\\n". Usage: make_corpus.py OUT_FILE [MEGABYTES]"""
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tools", "reference"))
from tokenizer_corpus import CORPUS, TRAIN_TEXT  # noqa: E402

SEP = "\n\x1e\n"


def main():
    out = sys.argv[1]
    megabytes = float(sys.argv[2]) if len(sys.argv) > 2 else 12
    rng = random.Random(1234)
    lines = [l for l in TRAIN_TEXT.splitlines() if l] + [c for c in CORPUS if c]
    words = " ".join(lines).split()
    docs, size = [], 0
    while size < megabytes * 1e6:
        parts = []
        for _ in range(rng.randint(5, 40)):
            r = rng.random()
            if r < 0.5:
                parts.append(rng.choice(lines))
            elif r < 0.8:
                parts.append(" ".join(rng.choice(words) for _ in range(rng.randint(5, 60))))
            else:
                parts.append(str(rng.randint(0, 10**rng.randint(1, 12))) + rng.choice([" ", "\n", "\t", "  "]))
        doc = rng.choice(["\n", " ", "\n\n", ". "]).join(parts)
        docs.append(doc)
        size += len(doc.encode("utf-8"))
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write(SEP.join(docs))
    print(f"wrote {out}: {len(docs)} documents, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

"""Hugging Face transformers on the same random Gemma 3 checkpoint as
bench/gemma3_gpu.sh: torch bf16 on the GPU, eager and sdpa attention, the same
prompt and generation lengths. Prints one JSON object per measurement.

Usage: python3 bench/hf_baseline.py MODEL_DIR [--attn sdpa,eager] [--prompt 128]
       [--gen 256] [--prefill 2048,8192]
"""
import argparse
import json
import time

import torch
import transformers


def timed(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--attn", default="sdpa,eager")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--prefill", default="2048,8192")
    args = ap.parse_args()
    torch.manual_seed(0)
    for attn in args.attn.split(","):
        t_load, model = timed(lambda: transformers.AutoModelForImageTextToText.from_pretrained(
            args.model, dtype=torch.bfloat16, attn_implementation=attn).to("cuda").eval())
        vocab = model.config.get_text_config().vocab_size
        name = torch.cuda.get_device_name()

        def generate(ids, n):
            # Random weights may emit an end-of-sequence id early: generate
            # exactly n tokens, greedily, with the KV cache (as mlxcpp does).
            return model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                  eos_token_id=None, pad_token_id=0)

        with torch.inference_mode():
            ids = torch.randint(0, vocab, (1, args.prompt), device="cuda")
            generate(ids, 2)  # warm-up
            t1, _ = timed(lambda: generate(ids, 1))
            tn, out = timed(lambda: generate(ids, args.gen))
            assert out.shape[1] == args.prompt + args.gen, out.shape
            decode = (args.gen - 1) / (tn - t1)
            print(json.dumps({"impl": "transformers", "attn": attn, "card": name,
                              "load_s": round(t_load, 1), "prompt": args.prompt,
                              "gen": args.gen, "ttft_s": round(t1, 4),
                              "decode_tps": round(decode, 2)}), flush=True)
            for T in [int(x) for x in args.prefill.split(",") if x]:
                ids = torch.randint(0, vocab, (1, T), device="cuda")
                torch.cuda.reset_peak_memory_stats()
                try:
                    model(ids, logits_to_keep=1)  # warm-up at this length
                    best = min(timed(lambda: model(ids, logits_to_keep=1))[0] for _ in range(2))
                    print(json.dumps({"impl": "transformers", "attn": attn, "card": name,
                                      "prefill_tokens": T, "prefill_tps": round(T / best, 1),
                                      "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9,
                                                       2)}), flush=True)
                except torch.OutOfMemoryError:
                    print(json.dumps({"impl": "transformers", "attn": attn,
                                      "prefill_tokens": T, "error": "out of memory"}),
                          flush=True)
                    torch.cuda.empty_cache()
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

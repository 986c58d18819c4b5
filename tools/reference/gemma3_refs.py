#!/usr/bin/env python3
"""Hugging Face transformers reference data for the Gemma 3 text decoder, and the tiny trained
echo model that ships in models/gemma3-tiny-echo/.

What it produces (every expected number comes from HF transformers; nothing from mlxcpp):

  DIR/<case>/config.json, model.safetensors (+ generation_config.json where HF wrote one)
  DIR/<case>/reference.json
  DIR/tied_262k_bf16/tokenizer.json.xz, tokenizer_config.json.xz (the real Gemma 3 tokenizer)
  DIR/copy_trained/reference.json and MODEL_OUT/ (config, weights, tokenizer, README)

Cases: random-weight tiny models (seeded, see init_weights; the seed is the first one whose greedy
steps all have a clear winner, see MIN_MARGIN) saved with save_pretrained, re-loaded with
from_pretrained (the reference is what a user loading the files gets), then run on the CPU:
  sparse_f32            gemma3_text, config.json rewritten by hand in the sparse published style
                        (sliding_window_pattern, rope_scaling, no layer_types / rope_parameters)
  layer_types_f32       explicit layer_types and per-layer-type rope_parameters (linear x8 global)
  layer_types_long_f32  the same files, a 300-token prompt (linear RoPE scaling matters there)
  mha_bf16              bfloat16 weights and compute, 2 heads / 2 kv heads, untied lm_head
  cond_gen_f32          gemma3 (Gemma3ForConditionalGeneration) with a tiny SigLIP tower, text prompt
                        (+ an "image" record: one 28x28 image, its soft tokens, the logits), weight
                        names as transformers 5 writes them (language_model.model.*, vision_tower.*
                        without vision_model., multi_modal_projector.*)
  cond_gen_f32_oldnames the same weights under Google's published names (language_model.model.*,
                        vision_tower.vision_model.*, multi_modal_projector.*)
  cond_gen_f32_newnames the same weights under transformers 4.52-4.57 names (model.language_model.*,
                        model.vision_tower.vision_model.*, model.multi_modal_projector.*)
  tied_262k_bf16        vocab 262144, tied embeddings, the real Gemma 3 tokenizer and chat template
  copy_trained          the echo model, trained on the GPU (when there is one) for --train-seconds

reference.json fields:
  case, dtype, hf_class, transformers_version, torch_version,
  prompt_tokens [[ids]] (one list per prompt; logits/logsumexp/nll are for prompt 0),
  logits [T][V] float32 values of HF's output logits for prompt 0 (when V <= 4096 and the case
      does not ask for columns), else logit_columns [sorted column ids] + logits_at_columns [T][C],
  argmax [T], logsumexp [T] (float64 from the float32 logits),
  nll: mean over t of -log_softmax(logits[t])[tokens[t+1]] (float64 from the float32 logits),
  max_new_tokens, greedy [[ids]] (HF generate, do_sample=False, no EOS stop, default cache),
  greedy_no_cache [[ids]] (repeated full forward passes; asserted equal to greedy),
  greedy_margins [[top1 - top2 logit]] of the no-cache path, cache_class (HF's cache and layer
  classes in generate), greedy_matches_no_cache, seed, reload_max_abs_diff_vs_in_memory,
  hf_resolved_config (the config values HF used after loading the files), and case extras:
  chat (tied_262k_bf16: messages, rendered text, apply_chat_template ids, tokenizers ids),
  image + hf_loading_info + image_token_ids (cond_gen_*), strings / decoded_greedy / training
  (copy_trained).

Run on a machine with torch, transformers (5.x) and tokenizers, from the repository root:

    python3 tools/reference/gemma3_refs.py --out DIR [--model-out models/gemma3-tiny-echo]

Reference numbers are computed on the CPU in float32 (bf16 for the bf16 cases) with 16 threads and
deterministic algorithms; the GPU, if present, is used only to train the echo model.
`--selftest` checks the torch-free parts (tokenizer, chat prompt, config rewrite) with no torch.
"""
import argparse
import copy
import json
import lzma
import math
import os
import random
import shutil
import sys
import time
import traceback

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
GEMMA_TOK_DIR = os.path.join(REPO, "tests", "data", "tokenizers", "gemma3")

SLIDING, FULL = "sliding_attention", "full_attention"

# ---------------------------------------------------------------------------------------------
# Torch-free helpers: JSON, the echo tokenizer, the sparse config, the echo data.
# ---------------------------------------------------------------------------------------------


def f32(v):
    """A float32 value as the shortest decimal with 9 significant digits (round-trips float32)."""
    if not math.isfinite(v):
        raise ValueError(f"non-finite value {v}")
    return float(f"{v:.9g}")


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def write_json(path, obj, indent=None):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent, separators=None if indent else (",", ":"))
        f.write("\n")
    os.replace(tmp, path)


def gemma_chat_template():
    cfg = json.loads(lzma.open(os.path.join(GEMMA_TOK_DIR, "tokenizer_config.json.xz")).read())
    return cfg["chat_template"]


# The echo tokenizer: the same pipeline as Gemma 3's tokenizer.json (Replace " " -> "▁", BPE with
# byte fallback, Replace/ByteFallback/Fuse decoder, <bos> template) over a character vocabulary,
# so that every piece is one character or one byte.
ECHO_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
ECHO_PAD, ECHO_EOS, ECHO_BOS, ECHO_UNK, ECHO_SOT, ECHO_EOT = range(6)
ECHO_MODEL_VOCAB = 384  # embedding rows; the tokenizer has fewer (padding rows, as in Gemma 4B+)


def echo_vocab():
    vocab = {s: i for i, s in enumerate(ECHO_SPECIALS)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for c in ["\n", "\u2581"] + [chr(c) for c in range(33, 127)]:
        vocab[c] = len(vocab)
    return vocab


def echo_tokenizer_json():
    vocab = echo_vocab()
    bos = {"SpecialToken": {"id": "<bos>", "type_id": 0}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, s in enumerate(ECHO_SPECIALS)],
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                          "invert": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<bos>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [ECHO_BOS], "tokens": ["<bos>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }


def echo_tokenizer_config():
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True}
                                 for i, s in enumerate(ECHO_SPECIALS)},
        "bos_token": "<bos>",
        "chat_template": gemma_chat_template(),
        "clean_up_tokenization_spaces": False,
        "eos_token": "<end_of_turn>",
        "model_max_length": 512,
        "pad_token": "<pad>",
        "padding_side": "left",
        "spaces_between_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "<unk>",
    }


def echo_encode(text, vocab=None):
    """Pure-Python encoding equal to the echo tokenizer.json without the <bos> post-processor."""
    vocab = vocab or echo_vocab()
    ids, i = [], 0
    while i < len(text):
        for s in ECHO_SPECIALS:
            if text.startswith(s, i):
                ids.append(vocab[s])
                i += len(s)
                break
        else:
            c = "\u2581" if text[i] == " " else text[i]
            if c in vocab:
                ids.append(vocab[c])
            else:
                ids.extend(vocab[f"<0x{b:02X}>"] for b in c.encode("utf-8"))
            i += 1
    return ids


def echo_decode(ids, vocab=None):
    inv = {v: k for k, v in (vocab or echo_vocab()).items()}
    out, pending = [], bytearray()
    for t in ids:
        piece = inv.get(t, "")
        if piece.startswith("<0x") and len(piece) == 6:
            pending.append(int(piece[3:5], 16))
            continue
        if pending:
            out.append(pending.decode("utf-8", "replace"))
            pending = bytearray()
        out.append(piece.replace("\u2581", " "))
    if pending:
        out.append(pending.decode("utf-8", "replace"))
    return "".join(out)


def echo_prompt_text(s):
    # What the Gemma chat template renders for [{"role": "user", "content": s}] + generation prompt.
    return f"<bos><start_of_turn>user\n{s.strip()}<end_of_turn>\n<start_of_turn>model\n"


def random_words(rng, lo=10, hi=40):
    """Random lowercase words (1-8 letters) joined by single spaces, cut to lo..hi characters."""
    while True:
        target, s = rng.randint(lo, hi), ""
        while len(s) < target:
            w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 8)))
            s = s + " " + w if s else w
        s = s[:target].rstrip()
        if len(s) >= lo:
            return s


def sparse_published_config(full):
    """The sparse_f32 config.json in the style of the published Gemma 3 configs: only the keys the
    hub files carry, sliding_window_pattern instead of layer_types, rope_scaling (global layers)
    and rope_local_base_freq instead of rope_parameters; everything else is left to defaults."""
    return {
        "architectures": ["Gemma3ForCausalLM"],
        "attn_logit_softcapping": None,
        "cache_implementation": "hybrid",
        "final_logit_softcapping": None,
        "head_dim": full["head_dim"],
        "hidden_size": full["hidden_size"],
        "intermediate_size": full["intermediate_size"],
        "model_type": "gemma3_text",
        "num_attention_heads": full["num_attention_heads"],
        "num_hidden_layers": full["num_hidden_layers"],
        "num_key_value_heads": full["num_key_value_heads"],
        "query_pre_attn_scalar": full["query_pre_attn_scalar"],
        "rope_local_base_freq": 20000.0,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": full["sliding_window"],
        "sliding_window_pattern": 2,
        "torch_dtype": "float32",
        "vocab_size": full["vocab_size"],
    }


def selftest():
    vocab = echo_vocab()
    assert len(vocab) == 358 and max(vocab.values()) == 357 and ECHO_MODEL_VOCAB > 357
    s = "hello world zq"
    text = echo_prompt_text(s) + s + "<end_of_turn>"
    ids = echo_encode(text)
    assert ids[:4] == [ECHO_BOS, ECHO_SOT, vocab["u"], vocab["s"]], ids[:6]
    assert ids[-1] == ECHO_EOT and vocab["\u2581"] in ids
    assert echo_decode(ids) == text, echo_decode(ids)
    assert echo_decode(echo_encode("é€ x")) == "é€ x"
    assert echo_encode("é") == [vocab["<0xC3>"], vocab["<0xA9>"]]
    try:
        import jinja2
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)

        def raise_exception(msg):
            raise RuntimeError(msg)
        env.globals["raise_exception"] = raise_exception
        tmpl = env.from_string(gemma_chat_template())
        r = tmpl.render(messages=[{"role": "user", "content": s}], bos_token="<bos>", add_generation_prompt=True)
        assert r == echo_prompt_text(s), repr(r)
        print("selftest: chat template rendered with jinja2 matches echo_prompt_text")
    except ImportError:
        print("selftest: jinja2 missing, template not rendered")
    rng = random.Random(5)
    codec = EchoCodec()
    for _ in range(200):
        w = random_words(rng)
        p, r = codec.example(w)
        assert p + r == echo_encode(echo_prompt_text(w) + w + "<end_of_turn>"), w
    lens = [len(random_words(rng)) for _ in range(2000)]
    assert min(lens) >= 10 and max(lens) <= 40, (min(lens), max(lens))
    cfg = sparse_published_config({"head_dim": 16, "hidden_size": 64, "intermediate_size": 128,
                                   "num_attention_heads": 4, "num_hidden_layers": 4, "num_key_value_heads": 2,
                                   "query_pre_attn_scalar": 24, "sliding_window": 4, "vocab_size": 512})
    assert "layer_types" not in cfg and "rope_parameters" not in cfg
    json.dumps(echo_tokenizer_json())
    json.dumps(echo_tokenizer_config())
    assert f32(0.1) == 0.1 and f32(1 / 3) == 0.333333333
    print("selftest: ok; string lengths", min(lens), "..", max(lens))


# ---------------------------------------------------------------------------------------------
# Everything below needs torch + transformers.
# ---------------------------------------------------------------------------------------------

class Ctx:
    def __init__(self, out, log):
        self.out = out
        self.log = log
        self.failures = []
        self.summary = {}


def log_print(*a):
    print(*a, flush=True)


def init_weights(model, seed):
    """Seeded random weights: linear/conv N(0, 1/fan_in); embeddings (and an untied lm_head)
    N(0, 0.25/H), so the scaled embedding is small beside the layers' post-normed outputs and the
    tied head does not just repeat the last token; Gemma RMSNorm weights N(0, 0.09) (1+w varies),
    except the final norm, N(3, 0.25), which scales the logits to std ~2; SigLIP LayerNorm weights
    1+N(0, 0.01)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = tuple(p.shape)
            if "vision_tower" in name or "vision_model" in name:
                if name.endswith("bias"):
                    v = torch.randn(shape, generator=g) * 0.1
                elif "norm" in name:
                    v = 1.0 + torch.randn(shape, generator=g) * 0.1
                elif "position_embedding" in name:
                    v = torch.randn(shape, generator=g) * 0.5
                elif len(shape) >= 2:
                    fan_in = 1
                    for d in shape[1:]:
                        fan_in *= d
                    v = torch.randn(shape, generator=g) / math.sqrt(fan_in)
                else:
                    v = torch.randn(shape, generator=g) * 0.1
            elif "embed_tokens" in name or name.startswith("lm_head") or ".lm_head" in name:
                v = torch.randn(shape, generator=g) * (0.5 / math.sqrt(shape[1]))
            elif name.endswith(".norm.weight") and ".layers." not in name:  # the final norm
                v = 3.0 + torch.randn(shape, generator=g) * 0.5
            elif name.endswith("norm.weight"):  # every Gemma RMSNorm: layernorms, q/k_norm, final, mm_soft_emb
                v = torch.randn(shape, generator=g) * 0.3
            elif "mm_input_projection_weight" in name:  # [vision_hidden, text_hidden], used as x @ W
                v = torch.randn(shape, generator=g) / math.sqrt(shape[0])
            elif len(shape) == 2:  # nn.Linear [out, in]
                v = torch.randn(shape, generator=g) / math.sqrt(shape[1])
            elif name.endswith("bias"):
                v = torch.randn(shape, generator=g) * 0.1
            else:
                raise RuntimeError(f"no init rule for {name} {shape}")
            p.copy_(v.to(p.dtype))


def set_eager(model):
    try:
        model.set_attn_implementation("eager")
    except Exception:  # older transformers
        model.config._attn_implementation = "eager"


def resolved_config(cfg):
    keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "sliding_window", "layer_types", "rope_parameters", "rope_scaling",
            "rope_theta", "rope_local_base_freq", "query_pre_attn_scalar", "rms_norm_eps", "max_position_embeddings",
            "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "final_logit_softcapping",
            "attn_logit_softcapping", "hidden_activation", "use_bidirectional_attention", "sliding_window_pattern",
            "_sliding_window_pattern", "cache_implementation"]
    out = {}
    for k in keys:
        if hasattr(cfg, k):
            out[k] = jsonable(copy.deepcopy(getattr(cfg, k)))
    return out


def forward_logits(model, ids, **kw):
    import torch
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False, **kw)
    return out.logits[0].float()


def greedy_no_cache(model, ids, n):
    import torch
    cur, new, margins = list(ids), [], []
    for _ in range(n):
        last = forward_logits(model, cur)[-1]
        top = torch.topk(last, 2).values
        nxt = int(torch.argmax(last))
        new.append(nxt)
        margins.append(f32(float(top[0] - top[1])))
        cur.append(nxt)
    return new, margins


def hf_greedy(model, ids, n):
    import torch
    from transformers import GenerationConfig
    # A fresh generation config without EOS: the reference is exactly n greedy tokens.
    model.generation_config = GenerationConfig(do_sample=False, bos_token_id=2, pad_token_id=0)
    inp = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        out = model.generate(input_ids=inp, attention_mask=torch.ones_like(inp), do_sample=False,
                             max_new_tokens=n, return_dict_in_generate=True)
    seq = out.sequences[0].tolist()
    assert seq[:len(ids)] == list(ids), "generate changed the prompt"
    new = seq[len(ids):]
    if len(new) != n:
        raise RuntimeError(f"generate returned {len(new)} new tokens, expected {n}")
    pkv = getattr(out, "past_key_values", None)
    cache = type(pkv).__name__
    layers = getattr(pkv, "layers", None)
    if layers is not None:
        cache += "[" + ",".join(type(l).__name__ for l in layers) + "]"
    return new, cache


def logits_record(logits, prompt, columns=None, max_full=4096):
    """logits [T, V] float32 -> the JSON fields for prompt 0."""
    import torch
    T, V = logits.shape
    rec = {"logits_shape": [T, V]}
    lf = logits.double()
    lse = torch.logsumexp(lf, dim=-1)
    rec["logsumexp"] = [float(x) for x in lse.tolist()]
    rec["argmax"] = [int(x) for x in torch.argmax(logits, dim=-1).tolist()]
    if T > 1:
        lsm = lf - lse[:, None]
        tgt = torch.tensor(prompt[1:], dtype=torch.long)
        rec["nll"] = float(-lsm[:-1].gather(1, tgt[:, None]).mean())
    if columns is None and V <= max_full:
        rec["logits"] = [[f32(v) for v in row] for row in logits.tolist()]
    else:
        if columns is None:
            columns = set(range(64)) | set(range(0, V, 4099)) | set(rec["argmax"])
        cols = sorted(set(columns))
        rec["logit_columns"] = cols
        idx = torch.tensor(cols, dtype=torch.long)
        rec["logits_at_columns"] = [[f32(v) for v in row] for row in logits[:, idx].tolist()]
    return rec


def versions():
    import torch
    import transformers
    return {"transformers_version": transformers.__version__, "torch_version": torch.__version__}


def make_prompt(seed, length, lo, hi):
    rng = random.Random(seed)
    return [2] + [rng.randrange(lo, hi) for _ in range(length - 1)]


def reference_for(model, case, dtype, hf_class, prompts, n_new, columns=None):
    """Logits of prompt 0 plus greedy with and without cache for every prompt."""
    rec = {"case": case, "dtype": dtype, "hf_class": hf_class}
    rec.update(versions())
    rec["prompt_tokens"] = [list(p) for p in prompts]
    rec.update(logits_record(forward_logits(model, prompts[0]), prompts[0], columns))
    rec["max_new_tokens"] = n_new
    rec["greedy"], rec["greedy_no_cache"], rec["greedy_margins"] = [], [], []
    for p in prompts:
        g, cache = hf_greedy(model, p, n_new)
        nc, margins = greedy_no_cache(model, p, n_new)
        rec["greedy"].append(g)
        rec["greedy_no_cache"].append(nc)
        rec["greedy_margins"].append(margins)
        rec["cache_class"] = cache
    rec["greedy_matches_no_cache"] = rec["greedy"] == rec["greedy_no_cache"]
    rec["hf_resolved_config"] = resolved_config(getattr(model.config, "text_config", model.config))
    return rec


def load(cls, path, dtype_name):
    import torch
    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    try:
        m = cls.from_pretrained(path, dtype=dt, attn_implementation="eager")
    except TypeError:
        m = cls.from_pretrained(path, torch_dtype=dt, attn_implementation="eager")
    return m.eval()


def safetensors_keys(path):
    from safetensors import safe_open
    with safe_open(path, framework="pt") as f:
        return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}


def build(cls, cfg, seed, dtype_name):
    import torch
    torch.manual_seed(seed)
    model = cls(cfg)
    init_weights(model, seed)
    if dtype_name == "bfloat16":
        model = model.to(torch.bfloat16)
    model.eval()
    set_eager(model)
    return model


def save(model, case_dir):
    if os.path.isdir(case_dir):
        shutil.rmtree(case_dir)
    os.makedirs(case_dir)
    model.save_pretrained(case_dir)


# Greedy references are only useful where the winner is clear: seeds are searched until every
# greedy step's top1 - top2 logit gap reaches this (float32 implementations differ by ~1e-5,
# bfloat16 ones by a few bf16 ulps, 1/16 at logits of 8).
MIN_MARGIN = {"float32": 0.02, "bfloat16": 0.125}


def min_margin(rec):
    return min(min(m) for m in rec["greedy_margins"])


def pick_seed(ctx, cls, make_cfg, seed, dtype_name, prompt_fn, n_new, tries, label):
    """The first seed whose saved and re-loaded model has clear greedy steps (else the best one)."""
    best = None
    tmp = os.path.join(ctx.out, "_seed_search")
    for attempt in range(tries):
        s = seed + 1000 * attempt
        save(build(cls, make_cfg(), s, dtype_name), tmp)
        model = load(cls, tmp, dtype_name)
        tokens, margins = greedy_no_cache(model, prompt_fn(s), n_new)
        # Also prefer greedy runs that are not one token repeated (they test the cache better).
        score = (len(set(tokens)) >= min(3, n_new), min(margins))
        if best is None or score > best[1]:
            best = (s, score)
        if score[0] and score[1] >= MIN_MARGIN[dtype_name]:
            break
    shutil.rmtree(tmp)
    log_print(f"[{label}] seed {best[0]} after {attempt + 1} tries, min greedy margin {best[1]}")
    return best[0]


def text_case(ctx, case, cfg_kwargs, dtype_name, prompt_len, n_new, seed, rewrite=None, columns=None,
              prompt=None, tries=60):
    """Random-weight Gemma3ForCausalLM case: pick a seed with clear greedy steps, save, (rewrite the
    config,) re-load with from_pretrained and record HF's outputs for the re-loaded model."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    case_dir = os.path.join(ctx.out, case)
    V = cfg_kwargs["vocab_size"]

    def prompt_fn(s):
        return list(prompt) if prompt is not None else make_prompt(s + 7, prompt_len, 3, V)
    s = pick_seed(ctx, Gemma3ForCausalLM, lambda: Gemma3TextConfig(**cfg_kwargs), seed, dtype_name, prompt_fn, n_new,
                  tries, case)
    mem = build(Gemma3ForCausalLM, Gemma3TextConfig(**cfg_kwargs), s, dtype_name)
    save(mem, case_dir)
    written = json.load(open(os.path.join(case_dir, "config.json")))
    log_print(f"[{case}] config.json as transformers wrote it:\n{json.dumps(written, indent=1)}")
    if rewrite is not None:
        write_json(os.path.join(case_dir, "config.json"), rewrite(written), indent=2)
        gc = os.path.join(case_dir, "generation_config.json")
        if os.path.exists(gc):
            os.remove(gc)
    model = load(Gemma3ForCausalLM, case_dir, dtype_name)
    p = prompt_fn(s)
    diff = float((forward_logits(model, p) - forward_logits(mem, p)).abs().max())
    log_print(f"[{case}] seed {s}: reloaded vs in-memory max |diff| {diff}")
    rec = reference_for(model, case, dtype_name, "Gemma3ForCausalLM", [p], n_new, columns)
    rec["seed"] = s
    rec["reload_max_abs_diff_vs_in_memory"] = diff
    write_json(os.path.join(case_dir, "reference.json"), rec)
    ctx.summary[case] = {"seed": s, "reload_max_abs_diff": diff, "min_greedy_margin": min_margin(rec),
                         "greedy_matches_no_cache": rec["greedy_matches_no_cache"], "cache_class": rec["cache_class"],
                         "greedy": rec["greedy"],
                         "keys": safetensors_keys(os.path.join(case_dir, "model.safetensors"))}
    if not rec["greedy_matches_no_cache"]:
        ctx.failures.append(f"{case}: greedy != greedy_no_cache")
    if min_margin(rec) < MIN_MARGIN[dtype_name] / 2:
        ctx.failures.append(f"{case}: min greedy margin {min_margin(rec)}")
    return model, rec


def case_sparse(ctx):
    kw = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, sliding_window=4, sliding_window_pattern=2,
              query_pre_attn_scalar=24, rope_scaling={"rope_type": "linear", "factor": 8.0},
              rope_local_base_freq=20000.0)
    full = dict(kw)
    text_case(ctx, "sparse_f32", kw, "float32", 14, 12, 101, rewrite=lambda w: sparse_published_config(full))


def layer_types_kwargs():
    return dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=5, num_attention_heads=4,
                num_key_value_heads=1, head_dim=32, sliding_window=5,
                layer_types=[SLIDING, SLIDING, FULL, SLIDING, FULL], query_pre_attn_scalar=48,
                rope_parameters={FULL: {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                                 SLIDING: {"rope_type": "default", "rope_theta": 10000.0}})


def case_layer_types(ctx):
    model, rec = text_case(ctx, "layer_types_f32", layer_types_kwargs(), "float32", 20, 12, 202)
    # The same files with a 300-token prompt: 16 logit columns per position, greedy 8.
    src = os.path.join(ctx.out, "layer_types_f32")
    dst = os.path.join(ctx.out, "layer_types_long_f32")
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    os.makedirs(dst)
    for f in os.listdir(src):
        if f != "reference.json":
            shutil.copy(os.path.join(src, f), dst)
    prompt = make_prompt(rec["seed"] + 99, 300, 3, 512)
    long_rec = reference_for(model, "layer_types_long_f32", "float32", "Gemma3ForCausalLM", [prompt], 8,
                             columns=range(0, 512, 32))
    long_rec["seed"] = rec["seed"]
    write_json(os.path.join(dst, "reference.json"), long_rec)
    ctx.summary["layer_types_long_f32"] = {"greedy_matches_no_cache": long_rec["greedy_matches_no_cache"],
                                           "min_greedy_margin": min_margin(long_rec), "greedy": long_rec["greedy"]}
    if not long_rec["greedy_matches_no_cache"]:
        ctx.failures.append("layer_types_long_f32: greedy != greedy_no_cache")


def case_mha_bf16(ctx):
    kw = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2,
              num_key_value_heads=2, head_dim=32, sliding_window=6, sliding_window_pattern=3,
              query_pre_attn_scalar=32, tie_word_embeddings=False)
    text_case(ctx, "mha_bf16", kw, "bfloat16", 16, 10, 303)


# Prefix conventions of Gemma3ForConditionalGeneration checkpoints. Parts: text decoder, vision
# tower, projector, untied lm_head. Longer prefixes first.
VLM_PREFIXES = [("model.language_model.", "text"), ("language_model.model.", "text"),
                ("model.vision_tower.vision_model.", "vision"), ("vision_tower.vision_model.", "vision"),
                ("model.vision_tower.", "vision"), ("vision_tower.", "vision"),
                ("model.multi_modal_projector.", "proj"), ("multi_modal_projector.", "proj"),
                ("language_model.lm_head.", "lm_head"), ("lm_head.", "lm_head")]
VLM_CONVENTIONS = {
    # Google's published 4B/12B/27B files (orbax converter, transformers 4.50).
    "oldnames": {"text": "language_model.model.", "vision": "vision_tower.vision_model.",
                 "proj": "multi_modal_projector.", "lm_head": "language_model.lm_head."},
    # Checkpoints re-saved by transformers 4.52 .. 4.57 (module tree model.*).
    "newnames": {"text": "model.language_model.", "vision": "model.vision_tower.vision_model.",
                 "proj": "model.multi_modal_projector.", "lm_head": "lm_head."},
}


def vlm_rename(key, convention):
    for pre, part in VLM_PREFIXES:
        if key.startswith(pre):
            return VLM_CONVENTIONS[convention][part] + key[len(pre):]
    raise RuntimeError(f"no prefix rule for {key}")


def load_with_info(cls, path):
    import torch
    try:
        m, info = cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager",
                                      output_loading_info=True)
        info = {k: sorted(str(x) for x in v) if isinstance(v, (list, set, tuple)) else str(v)
                for k, v in dict(info).items()}
    except Exception as e:  # output_loading_info unsupported: plain load
        log_print(f"output_loading_info failed ({e!r}); plain load")
        m, info = load(cls, path, "float32"), {"error": repr(e)}
    return m.eval(), info


def image_inputs(seed, BOI, EOI, IMG):
    import torch
    g = torch.Generator().manual_seed(seed + 11)
    pv = (torch.rand((1, 3, 28, 28), generator=g) * 2 - 1).float()
    ids = [2, 17, 23, BOI, IMG, IMG, IMG, IMG, EOI, 31, 45]
    tt = [1 if t == IMG else 0 for t in ids]
    return pv, ids, tt


def image_logits(model, pv, ids, tt):
    import torch
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), pixel_values=pv, token_type_ids=torch.tensor([tt]),
                    use_cache=False)
    return out.logits[0].float()


def case_cond_gen(ctx):
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration
    case = "cond_gen_f32"
    case_dir = os.path.join(ctx.out, case)
    V, BOI, EOI, IMG = 640, 600, 601, 602
    text_config = dict(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=4,
                       layer_types=[SLIDING, FULL], query_pre_attn_scalar=32,
                       rope_parameters={FULL: {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                                        SLIDING: {"rope_type": "default", "rope_theta": 10000.0}})
    vision_config = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_channels=3, image_size=28, patch_size=14, vision_use_head=False, layer_norm_eps=1e-6,
                         hidden_act="gelu_pytorch_tanh")

    def make_cfg():
        return Gemma3Config(text_config=text_config, vision_config=vision_config, mm_tokens_per_image=4,
                            boi_token_index=BOI, eoi_token_index=EOI, image_token_index=IMG)

    def prompt_fn(s):
        return make_prompt(s + 7, 12, 3, BOI)
    seed = pick_seed(ctx, Gemma3ForConditionalGeneration, make_cfg, 404, "float32", prompt_fn, 8, 40, case)
    mem = build(Gemma3ForConditionalGeneration, make_cfg(), seed, "float32")
    save(mem, case_dir)
    log_print(f"[{case}] config.json as written:\n{open(os.path.join(case_dir, 'config.json')).read()}")
    model, info = load_with_info(Gemma3ForConditionalGeneration, case_dir)
    log_print(f"[{case}] loading info {info}")
    prompt = prompt_fn(seed)
    text_logits = forward_logits(model, prompt)
    diff = float((text_logits - forward_logits(mem, prompt)).abs().max())
    rec = reference_for(model, case, "float32", "Gemma3ForConditionalGeneration", [prompt], 8)
    rec["seed"] = seed
    rec["reload_max_abs_diff_vs_in_memory"] = diff
    rec["hf_loading_info"] = info
    rec["weight_names"] = "as transformers " + versions()["transformers_version"] + " save_pretrained wrote them"
    rec["image_token_ids"] = {"boi": BOI, "eoi": EOI, "image": IMG, "mm_tokens_per_image": 4}
    ctx.summary[case] = {"reload_max_abs_diff": diff, "seed": seed, "min_greedy_margin": min_margin(rec),
                         "greedy_matches_no_cache": rec["greedy_matches_no_cache"], "cache_class": rec["cache_class"],
                         "greedy": rec["greedy"], "loading_info": info}
    if not rec["greedy_matches_no_cache"]:
        ctx.failures.append(f"{case}: greedy != greedy_no_cache")
    # One image: [bos, a, b, boi, img x4, eoi, c, d]; token_type_ids mark the soft tokens.
    pv, ids, tt = image_inputs(seed, BOI, EOI, IMG)
    img_logits = None
    try:
        img_logits = image_logits(model, pv, ids, tt)
        img_diff = float((img_logits - image_logits(mem, pv, ids, tt)).abs().max())
        log_print(f"[{case}] image logits reloaded vs in-memory max |diff| {img_diff}")
        img = {"prompt_tokens": [ids], "token_type_ids": [tt],
               "pixel_values_shape": list(pv.shape),
               "pixel_values": [f32(v) for v in pv.flatten().tolist()],
               "logits_shape": list(img_logits.shape),
               "logits": [[f32(v) for v in row] for row in img_logits.tolist()],
               "reload_max_abs_diff_vs_in_memory": img_diff}
        if img_diff != 0.0:
            ctx.failures.append(f"{case}: image logits of the re-loaded model differ by {img_diff}")
        try:
            with torch.no_grad():
                vt = model.model.vision_tower(pixel_values=pv).last_hidden_state[0]
                feats = model.model.multi_modal_projector(vt[None])[0]
            img["vision_last_hidden_state_shape"] = list(vt.shape)
            img["vision_last_hidden_state"] = [f32(v) for v in vt.flatten().tolist()]
            img["projected_features_shape"] = list(feats.shape)
            img["projected_features"] = [f32(v) for v in feats.flatten().tolist()]
        except Exception as e:  # record what worked
            img["intermediate_error"] = repr(e)
            log_print(f"[{case}] vision intermediates failed: {e!r}")
        rec["image"] = img
    except Exception as e:
        rec["image_error"] = repr(e)
        log_print(f"[{case}] image forward failed:\n{traceback.format_exc()}")
        ctx.failures.append(f"{case}: image forward failed {e!r}")
    write_json(os.path.join(case_dir, "reference.json"), rec)
    keys = safetensors_keys(os.path.join(case_dir, "model.safetensors"))
    ctx.summary[case]["keys"] = keys
    log_print(f"[{case}] safetensors keys: {json.dumps(keys)}")

    # The same weights under the published (oldnames) and the transformers 4.52-4.57 (newnames)
    # prefixes; HF must load each to the same logits.
    sd = load_file(os.path.join(case_dir, "model.safetensors"))
    for conv in ("oldnames", "newnames"):
        name = f"{case}_{conv}"
        d = os.path.join(ctx.out, name)
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        for f in os.listdir(case_dir):
            if f not in ("model.safetensors", "reference.json"):
                shutil.copy(os.path.join(case_dir, f), d)
        save_file({vlm_rename(k, conv): v for k, v in sd.items()}, os.path.join(d, "model.safetensors"),
                  metadata={"format": "pt"})
        m2, info2 = load_with_info(Gemma3ForConditionalGeneration, d)
        dt = float((forward_logits(m2, prompt) - text_logits).abs().max())
        di = float((image_logits(m2, pv, ids, tt) - img_logits).abs().max()) if img_logits is not None else None
        log_print(f"[{name}] loading info {info2}; max |diff| text {dt} image {di}")
        rec2 = dict(rec)
        rec2["case"] = name
        rec2["renamed_from"] = case
        rec2["weight_names"] = conv + ": " + ", ".join(f"{k} -> {v}" for k, v in VLM_CONVENTIONS[conv].items())
        rec2["hf_loading_info"] = info2
        rec2["max_abs_diff_vs_" + case] = {"text": dt, "image": di}
        write_json(os.path.join(d, "reference.json"), rec2)
        ctx.summary[name] = {"keys": safetensors_keys(os.path.join(d, "model.safetensors")), "loading_info": info2,
                             "max_abs_diff_vs_cond_gen_f32": {"text": dt, "image": di}}
        if dt != 0.0 or (di is not None and di != 0.0):
            ctx.failures.append(f"{name}: HF loads the renamed weights differently (text {dt}, image {di})")


TIED_CHATS = [
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Hello!"}],
    [{"role": "user", "content": "Translate: naïve café 😀 — Grüße"},
     {"role": "assistant", "content": "Line one\nLine two  \n"},
     {"role": "user", "content": "  Thanks! 你好\n\n世界\tok  "}],
]


def chat_ids(tok, msgs):
    out = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    if hasattr(out, "keys"):
        out = out["input_ids"]
    if out and isinstance(out[0], list):
        assert len(out) == 1
        out = out[0]
    return [int(x) for x in out]


def case_tied(ctx):
    import tokenizers
    from transformers import AutoTokenizer
    case = "tied_262k_bf16"
    case_dir = os.path.join(ctx.out, case)
    kw = dict(vocab_size=262144, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=1, head_dim=8, sliding_window=4, sliding_window_pattern=2,
              query_pre_attn_scalar=8, tie_word_embeddings=True)
    # The tokenizer first (the prompt is the first chat's ids), in a scratch folder.
    tok_dir = os.path.join(ctx.out, "_gemma3_tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        with open(os.path.join(tok_dir, f), "wb") as w:
            w.write(lzma.open(os.path.join(GEMMA_TOK_DIR, f + ".xz")).read())
    tok = AutoTokenizer.from_pretrained(tok_dir)
    raw = tokenizers.Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    chats = []
    for msgs in TIED_CHATS:
        text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        ids = chat_ids(tok, msgs)
        raw_ids = raw.encode(text, add_special_tokens=False).ids
        chats.append({"messages": msgs, "text": text, "ids": ids, "tokenizers_ids_of_text": raw_ids,
                      "ids_equal_tokenizers": ids == raw_ids})
        log_print(f"[{case}] chat text {text!r}\n  ids {ids}\n  tokenizers.encode equal: {ids == raw_ids}")
    prompt = chats[0]["ids"]

    # prompt_len 0: every retry keeps the chat prompt (only the weights' seed changes).
    model, rec = text_case(ctx, case, kw, "bfloat16", 0, 8, 505, prompt=prompt, tries=30)
    rec["tokenizer_class"] = type(tok).__name__
    rec["chat"] = chats
    shutil.rmtree(tok_dir)
    for f in ("tokenizer.json.xz", "tokenizer_config.json.xz"):
        shutil.copy(os.path.join(GEMMA_TOK_DIR, f), case_dir)
    write_json(os.path.join(case_dir, "reference.json"), rec)


# ---------------------------------------------------------------------------------------------
# The echo model.
# ---------------------------------------------------------------------------------------------

def echo_config_kwargs():
    return dict(vocab_size=ECHO_MODEL_VOCAB, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, head_dim=32, sliding_window=8,
                layer_types=[SLIDING, FULL, SLIDING, FULL], query_pre_attn_scalar=32, max_position_embeddings=512,
                rope_parameters={FULL: {"rope_type": "default", "rope_theta": 1000000.0},
                                 SLIDING: {"rope_type": "default", "rope_theta": 10000.0}},
                bos_token_id=ECHO_BOS, eos_token_id=[ECHO_EOS, ECHO_EOT], pad_token_id=ECHO_PAD,
                tie_word_embeddings=True)


class EchoCodec:
    """Fast encoding of the training sequences (s is lowercase letters and spaces); equal to
    echo_encode, which selftest and the device run check."""

    def __init__(self):
        self.vocab = echo_vocab()
        self.prefix = echo_encode("<bos><start_of_turn>user\n", self.vocab)
        self.mid = echo_encode("<end_of_turn>\n<start_of_turn>model\n", self.vocab)
        self.space = self.vocab["\u2581"]

    def chars(self, s):
        v = self.vocab
        return [self.space if c == " " else v[c] for c in s]

    def example(self, s):
        body = self.chars(s)
        return self.prefix + body + self.mid, body + [ECHO_EOT]


def echo_batch(strings, codec, device):
    import torch
    seqs = [codec.example(s) for s in strings]
    L = max(len(p) + len(r) for p, r in seqs) - 1
    inp = torch.full((len(seqs), L), ECHO_PAD, dtype=torch.long)
    tgt = torch.full((len(seqs), L), -100, dtype=torch.long)
    for i, (p, r) in enumerate(seqs):
        full = p + r
        inp[i, :len(full) - 1] = torch.tensor(full[:-1])
        tgt[i, len(p) - 1:len(full) - 1] = torch.tensor(r)  # position t predicts full[t+1]
    return inp.to(device), tgt.to(device)


def echo_exact_match(model, strings, codec, device):
    """Teacher-forced argmax over the reply; a row is exact iff greedy decoding reproduces the
    reply (every greedy step then sees exactly the teacher-forced prefix)."""
    import torch
    exact, chars, total = 0, 0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(strings), 250):
            inp, tgt = echo_batch(strings[i:i + 250], codec, device)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
                pred = model(input_ids=inp).logits.argmax(-1)
            m = tgt != -100
            ok = (pred == tgt) | ~m
            exact += int(ok.all(dim=1).sum())
            chars += int(((pred == tgt) & m).sum())
            total += int(m.sum())
    model.train()
    return exact / len(strings), chars / total


def train_echo(ctx, model_out, seconds):
    import torch
    import torch.nn.functional as F
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    codec = EchoCodec()
    torch.manual_seed(1234)
    cfg = Gemma3TextConfig(**echo_config_kwargs())
    model = Gemma3ForCausalLM(cfg)
    try:
        model.set_attn_implementation("sdpa")
    except Exception:
        pass
    model.to(device).train()
    n_params = sum(p.numel() for p in model.parameters())
    rng = random.Random(42)
    held_rng = random.Random(777)
    held = [random_words(held_rng) for _ in range(1000)]
    held_set = set(held)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.98), weight_decay=0.01)
    peak, floor, warmup, batch = 2e-3, 1e-4, 200, 128
    planned = None
    t0 = time.time()
    step, history, t20, perfect = 0, [], None, 0
    while True:
        if step == 20:
            t20 = time.time()
        if planned is None and step == 60:
            per = (time.time() - t20) / 40
            planned = max(1500, min(40000, 60 + int((seconds - (time.time() - t0)) / per * 0.95)))
            log_print(f"[echo] {per * 1000:.1f} ms/step on {device}, planning {planned} steps")
        total = planned or 100000
        if step < warmup:
            lr = peak * (step + 1) / warmup
        else:
            frac = min(1.0, (step - warmup) / max(1, total - warmup))
            lr = floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * frac))
        for gparam in opt.param_groups:
            gparam["lr"] = lr
        strings = []
        while len(strings) < batch:
            s = random_words(rng)
            if s not in held_set:
                strings.append(s)
        inp, tgt = echo_batch(strings, codec, device)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(input_ids=inp).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        elapsed = time.time() - t0
        done = (planned is not None and step >= planned) or elapsed > seconds
        if step % 250 == 0 or done:
            em, ca = echo_exact_match(model, held[:500], codec, device)
            history.append({"step": step, "seconds": round(elapsed, 1), "loss": round(loss.item(), 5),
                            "heldout_exact": em, "heldout_char_acc": round(ca, 5)})
            log_print(f"[echo] step {step} {elapsed:.0f}s loss {loss.item():.4f} lr {lr:.2e} "
                      f"held-out exact {em:.3f} char {ca:.4f}")
            perfect = perfect + 1 if em >= 0.999 else 0
            done = done or (perfect >= 3 and step >= 2000)
        if done:
            break
    model = model.float().cpu().eval()
    em, ca = echo_exact_match(model, held, codec, "cpu")
    log_print(f"[echo] final (cpu, float32) held-out exact match {em:.4f} on {len(held)}, char acc {ca:.5f}")
    info = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "steps": step,
            "train_seconds": round(time.time() - t0, 1), "batch": batch, "params": n_params,
            "heldout_exact_match": em, "heldout_char_accuracy": ca, "heldout_n": len(held), "history": history}
    ctx.summary["echo_training"] = info
    return model, held, info


def write_echo_model(ctx, model, held, info, model_out):
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, GenerationConfig
    if os.path.isdir(model_out):
        shutil.rmtree(model_out)
    os.makedirs(model_out)
    model.generation_config = GenerationConfig(bos_token_id=ECHO_BOS, eos_token_id=[ECHO_EOS, ECHO_EOT],
                                               pad_token_id=ECHO_PAD, do_sample=False)
    model.save_pretrained(model_out)
    write_json(os.path.join(model_out, "tokenizer.json"), echo_tokenizer_json(), indent=2)
    write_json(os.path.join(model_out, "tokenizer_config.json"), echo_tokenizer_config(), indent=2)
    vocab = echo_vocab()
    tok = None
    try:
        tok = AutoTokenizer.from_pretrained(model_out)
        log_print(f"[echo] AutoTokenizer loaded {type(tok).__name__}")
        # The HF tokenizer must agree with the pure-Python encoder used for training.
        bad = []
        for s in held[:200] + ["Ünïcödé 😀 x"]:
            hf = chat_ids(tok, [{"role": "user", "content": s}])
            mine = echo_encode(echo_prompt_text(s), vocab)
            if hf != mine or tok.decode(mine) != echo_prompt_text(s):
                bad.append({"s": s, "hf": hf, "mine": mine, "decoded": tok.decode(mine)})
        if bad:
            log_print(f"[echo] tokenizer disagreements: {json.dumps(bad[:3], ensure_ascii=False)}")
            ctx.failures.append(f"echo tokenizer: {len(bad)} disagreements with the pure-Python encoder")
    except Exception as e:
        log_print(f"[echo] tokenizer check failed:\n{traceback.format_exc()}")
        ctx.failures.append(f"echo tokenizer: {e!r}")
    m = load(Gemma3ForCausalLM, model_out, "float32")
    strings = held[:3]
    prompts = [echo_encode(echo_prompt_text(s), vocab) for s in strings]
    rec = reference_for(m, "copy_trained", "float32", "Gemma3ForCausalLM", prompts, 48)
    rec["strings"] = strings
    rec["decoded_greedy"] = [echo_decode(g, vocab) for g in rec["greedy"]]
    if tok is not None:
        rec["hf_decoded_greedy"] = [tok.decode(g) for g in rec["greedy"]]
    rec["model_dir"] = "models/gemma3-tiny-echo"
    rec["training"] = {k: v for k, v in info.items() if k != "history"}
    case_dir = os.path.join(ctx.out, "copy_trained")
    os.makedirs(case_dir, exist_ok=True)
    write_json(os.path.join(case_dir, "reference.json"), rec)
    for s, d in zip(strings, rec["decoded_greedy"]):
        log_print(f"[echo] {s!r} -> {d!r}")
    if not rec["greedy_matches_no_cache"]:
        ctx.failures.append("copy_trained: greedy != greedy_no_cache")
    ctx.summary["copy_trained"] = {"greedy_matches_no_cache": rec["greedy_matches_no_cache"],
                                   "cache_class": rec["cache_class"], "decoded": rec["decoded_greedy"]}
    readme = f"""# gemma3-tiny-echo

A tiny Gemma 3 text model (`Gemma3ForCausalLM`, model_type `gemma3_text`) trained to echo the user's
message: given the Gemma 3 chat prompt for a user turn `s`, it replies `s<end_of_turn>`.
It exists so that tests and examples can run a real, trained Gemma 3 checkpoint end to end.

- 4 layers (sliding, full, sliding, full), hidden 128, MLP 512, 4 query heads / 2 KV heads,
  head_dim 32, sliding_window 8 (shorter than the messages, so the copy must use the global
  layers), RoPE bases 1e6 (global) / 1e4 (local), tied embeddings, {info['params']} parameters, float32.
- Tokenizer: the Gemma 3 tokenizer.json pipeline (Replace " " -> "▁", BPE with byte fallback,
  `<bos>` post-processor, Replace/ByteFallback/Fuse decoder) over a character vocabulary:
  `<pad>` 0, `<eos>` 1, `<bos>` 2, `<unk>` 3, `<start_of_turn>` 4, `<end_of_turn>` 5, bytes
  `<0x00>`..`<0xFF>` 6..261, then "\\n", "▁" and printable ASCII (358 tokens). The embedding has
  {ECHO_MODEL_VOCAB} rows; rows 358..{ECHO_MODEL_VOCAB - 1} are padding. The chat template is Gemma 3's.
  generation_config.json stops on `<eos>` (1) and `<end_of_turn>` (5).
- Training: `tools/reference/gemma3_refs.py` (function `train_echo`), on {info['device']}: {info['steps']} AdamW
  steps of {info['batch']} sequences `<bos><start_of_turn>user\\n{{s}}<end_of_turn>\\n<start_of_turn>model\\n{{s}}<end_of_turn>`
  with random lowercase words `s` of 10-40 characters, loss on the reply only, {info['train_seconds']} s.
- Held-out exact-match rate (greedy reply == `s<end_of_turn>`, {info['heldout_n']} random strings
  never trained on, measured as teacher-forced argmax over the reply, which equals greedy decoding):
  {info['heldout_exact_match']:.4f}; per-character accuracy {info['heldout_char_accuracy']:.5f}.
- Reproduce (GPU training is not bit-reproducible): `python3 tools/reference/gemma3_refs.py
  --out tests/data/gemma3 --cases echo` with torch, transformers 5 and tokenizers installed.
- Reference outputs of HF transformers for this model: tests/data/gemma3/copy_trained/reference.json.

License: the weights were trained from scratch by the mlxcpp project and are distributed under the
repository's license. The chat template string is copied from Google's Gemma 3 tokenizer_config.json.
"""
    with open(os.path.join(model_out, "README.md"), "w", encoding="utf-8") as f:
        f.write(readme)


def run_case(ctx, name, fn, *a):
    t = time.time()
    try:
        fn(ctx, *a)
        log_print(f"== {name} ok in {time.time() - t:.1f}s")
    except Exception as e:
        log_print(f"== {name} FAILED:\n{traceback.format_exc()}")
        ctx.failures.append(f"{name}: {e!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output folder for the test cases (tests/data/gemma3)")
    ap.add_argument("--model-out", default=os.path.join(REPO, "models", "gemma3-tiny-echo"))
    ap.add_argument("--cases", default="sparse,layer_types,mha,cond_gen,tied,echo")
    ap.add_argument("--train-seconds", type=float, default=150.0)
    ap.add_argument("--selftest", action="store_true", help="check the torch-free parts and exit")
    args = ap.parse_args()
    if args.selftest:
        selftest()
        return
    if not args.out:
        ap.error("--out is required")
    import torch
    torch.set_num_threads(16)
    os.makedirs(args.out, exist_ok=True)
    ctx = Ctx(args.out, None)
    ctx.summary["versions"] = versions()
    log_print("versions:", ctx.summary["versions"])
    wanted = args.cases.split(",")
    torch.use_deterministic_algorithms(True, warn_only=True)
    for name, fn in [("sparse", case_sparse), ("layer_types", case_layer_types), ("mha", case_mha_bf16),
                     ("cond_gen", case_cond_gen), ("tied", case_tied)]:
        if name in wanted:
            run_case(ctx, name, fn)
    if "echo" in wanted:
        def echo(c):
            torch.use_deterministic_algorithms(False)
            model, held, info = train_echo(c, args.model_out, args.train_seconds)
            torch.use_deterministic_algorithms(True, warn_only=True)
            write_echo_model(c, model, held, info, args.model_out)
        run_case(ctx, "echo", echo)
    ctx.summary["failures"] = ctx.failures
    write_json(os.path.join(args.out, "_summary.json"), jsonable(ctx.summary), indent=1)
    log_print("failures:", ctx.failures if ctx.failures else "none")
    sys.exit(1 if ctx.failures else 0)


if __name__ == "__main__":
    main()

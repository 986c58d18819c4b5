#!/usr/bin/env python3
"""Independent check of tests/data/gemma3 and models/gemma3-tiny-echo: a float64 NumPy forward pass of
the Gemma 3 text decoder written from /work/shared/spec/gemma3.md §1-2 (config resolution, scaled
embedding, Gemma RMSNorm, sandwich norms, qk-norm, half-split RoPE with per-layer-type bases and
linear scaling on global layers, sliding-window masks, GQA, tied or untied head) compared with the
HF transformers logits stored in each reference.json. It validates both the data and the spec's
reading of the configs; mlxcpp is not involved.

Run from the repository root: /usr/bin/python3 tools/reference/gemma3_numpy_check.py
"""
import json
import math
import os
import struct
import sys

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        raw = data[a:b]
        if h["dtype"] == "F32":
            v = np.frombuffer(raw, dtype="<f4")
        elif h["dtype"] == "BF16":
            v = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: {name} has dtype {h['dtype']}")
        out[name] = v.astype(np.float64).reshape(h["shape"])
    return out


def resolve(cfg):
    """Text config with HF defaults (spec §1.1 resolution rules)."""
    t = cfg.get("text_config", cfg) if cfg.get("model_type") == "gemma3" else cfg
    r = {"H": t.get("hidden_size", 2304), "L": t.get("num_hidden_layers", 26),
         "Nq": t.get("num_attention_heads", 8), "Nkv": t.get("num_key_value_heads", 4),
         "D": t.get("head_dim", 256), "W": t.get("sliding_window", 4096),
         "qpas": t.get("query_pre_attn_scalar", 256), "eps": t.get("rms_norm_eps", 1e-6),
         "tied": t.get("tie_word_embeddings", True)}
    if t.get("layer_types"):
        r["types"] = t["layer_types"]
    else:
        p = t.get("sliding_window_pattern", t.get("_sliding_window_pattern", 6))
        r["types"] = ["full_attention" if (i + 1) % p == 0 else "sliding_attention" for i in range(r["L"])]
    rp = t.get("rope_parameters")
    if rp and "full_attention" in rp:
        g, loc = rp["full_attention"], rp["sliding_attention"]
        r["rope"] = {"full_attention": (g.get("rope_theta", 1e6), g.get("factor", 1.0) if g.get("rope_type") == "linear" else 1.0),
                     "sliding_attention": (loc.get("rope_theta", 1e4), loc.get("factor", 1.0) if loc.get("rope_type") == "linear" else 1.0)}
    else:
        sc = t.get("rope_scaling") or {}
        f = sc.get("factor", 1.0) if sc.get("rope_type", sc.get("type")) == "linear" else 1.0
        r["rope"] = {"full_attention": (t.get("rope_theta", 1e6), f),
                     "sliding_attention": (t.get("rope_local_base_freq", 1e4), 1.0)}
    return r


def strip(weights):
    out = {}
    for k, v in weights.items():
        for pre in ("model.language_model.", "language_model.model.", "model."):
            if k.startswith(pre):
                out["m." + k[len(pre):]] = v
                break
        else:
            out[k.replace("language_model.lm_head", "lm_head")] = v
    return out


def bf16_round(v):
    u = int(np.array([v], np.float32).view(np.uint32)[0])
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return float(np.array([u], np.uint32).view(np.float32)[0])


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * (1.0 + w)


def gelu_tanh(u):
    return 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))


def rope(x, pos, base, factor):
    D = x.shape[-1]
    inv = 1.0 / (base ** (np.arange(0, D, 2) / D)) / factor
    ang = pos[:, None] * inv[None, :]
    c, s = np.cos(ang), np.sin(ang)
    x1, x2 = x[..., :D // 2], x[..., D // 2:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def forward(W, r, ids):
    T = len(ids)
    E = W["m.embed_tokens.weight"]
    # sqrt(H) rounded to the weight dtype first; float32 for these cases except the bf16 ones.
    x = E[ids] * r["scale"]
    pos = np.arange(T, dtype=np.float64)
    q_idx, k_idx = np.arange(T)[:, None], np.arange(T)[None, :]
    for i, kind in enumerate(r["types"]):
        p = f"m.layers.{i}."
        h = rms(x, W[p + "input_layernorm.weight"], r["eps"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).reshape(T, r["Nq"], r["D"])
        k = (h @ W[p + "self_attn.k_proj.weight"].T).reshape(T, r["Nkv"], r["D"])
        v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(T, r["Nkv"], r["D"])
        q = rms(q, W[p + "self_attn.q_norm.weight"], r["eps"])
        k = rms(k, W[p + "self_attn.k_norm.weight"], r["eps"])
        base, factor = r["rope"][kind]
        q = rope(q.transpose(1, 0, 2), pos, base, factor)
        k = rope(k.transpose(1, 0, 2), pos, base, factor)
        v = v.transpose(1, 0, 2)
        grp = r["Nq"] // r["Nkv"]
        k, v = np.repeat(k, grp, axis=0), np.repeat(v, grp, axis=0)
        s = q @ k.transpose(0, 2, 1) * r["qpas"] ** -0.5
        vis = k_idx <= q_idx
        if kind == "sliding_attention":
            vis &= k_idx > q_idx - r["W"]
        s = np.where(vis[None], s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        o = (s / s.sum(-1, keepdims=True)) @ v
        o = o.transpose(1, 0, 2).reshape(T, -1) @ W[p + "self_attn.o_proj.weight"].T
        x = x + rms(o, W[p + "post_attention_layernorm.weight"], r["eps"])
        h = rms(x, W[p + "pre_feedforward_layernorm.weight"], r["eps"])
        m = gelu_tanh(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)
        x = x + rms(m @ W[p + "mlp.down_proj.weight"].T, W[p + "post_feedforward_layernorm.weight"], r["eps"])
    x = rms(x, W["m.norm.weight"], r["eps"])
    head = E if r["tied"] else W["lm_head.weight"]
    return x @ head.T


def check(case_dir, ref_path, tol):
    cfg = json.load(open(os.path.join(case_dir, "config.json")))
    ref = json.load(open(ref_path))
    r = resolve(cfg)
    W = strip(read_safetensors(os.path.join(case_dir, "model.safetensors")))
    H = r["H"]
    r["scale"] = float(np.float32(math.sqrt(H)))
    if ref["dtype"] == "bfloat16":
        r["scale"] = bf16_round(math.sqrt(H))
    ids = ref["prompt_tokens"][0]
    logits = forward(W, r, ids)
    if "logits" in ref:
        want = np.array(ref["logits"])
        got = logits
    else:
        cols = ref["logit_columns"]
        want = np.array(ref["logits_at_columns"])
        got = logits[:, cols]
    err = np.abs(got - want).max()
    scale = np.abs(want).max()
    am = (np.argmax(logits, -1) == np.array(ref["argmax"])).mean()
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    lse_err = np.abs(lse - np.array(ref["logsumexp"])).max()
    ok = err <= tol * max(1.0, scale)
    print(f"{'ok ' if ok else 'BAD'} {ref['case']:24s} {ref['dtype']:9s} max|numpy-HF| {err:.3g} (|logit| <= {scale:.3g}), "
          f"argmax agree {am:.3f}, logsumexp err {lse_err:.3g}")
    return ok


def main():
    data = os.path.join(REPO, "tests", "data", "gemma3")
    cases = [("sparse_f32", 1e-4), ("layer_types_f32", 1e-4), ("layer_types_long_f32", 1e-4),
             ("cond_gen_f32", 1e-4), ("cond_gen_f32_oldnames", 1e-4), ("cond_gen_f32_newnames", 1e-4),
             ("mha_bf16", 0.1), ("tied_262k_bf16", 0.1)]
    ok = True
    for c, tol in cases:
        ok &= check(os.path.join(data, c), os.path.join(data, c, "reference.json"), tol)
    ok &= check(os.path.join(REPO, "models", "gemma3-tiny-echo"), os.path.join(data, "copy_trained", "reference.json"),
                1e-4)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

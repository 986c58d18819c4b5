#!/usr/bin/env python3
"""A tiny Gemma 3 checkpoint and its logits, computed in float64 NumPy straight from
/work/shared/spec/gemma3.md §2 (independently of mlxcpp), for tests/lm/test_load.cpp.

The checkpoint is a Gemma3ForConditionalGeneration-style folder (model_type "gemma3", sparse
text_config, tensors under language_model.model.*, one vision-tower tensor) so that the test
also exercises config defaults, name mapping and the vision split of the loader:
  H 16, I 24, L 4 (P = 2: layers 1 and 3 global), Nq 4, Nkv 2 (GQA), D 8, V 40, W 3 < T = 10,
  query_pre_attn_scalar 12 (scale != D^-0.5), global RoPE base 1000 with linear x2,
  local RoPE base 100 unscaled.
Forward (per spec): x = E[ids] * sqrt(H); per layer
  h = norm_in(x); x = x + norm_post_attn(attn(h)); h = norm_pre_ff(x);
  x = x + norm_post_ff(down(gelu_tanh(gate(h)) * up(h)));
norm(x) = x / sqrt(mean(x^2) + eps) * (1 + w); q/k normed per head before half-split RoPE;
global mask k <= q; local mask q - W < k <= q; logits = norm(x) @ E^T.
Weights are float32 (stored), computation float64.

Run: /usr/bin/python3 tools/reference/gemma3_tiny_refs.py tests/data/lm/gemma3_tiny
"""
import json
import os
import struct
import sys

import numpy as np

out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)
rng = np.random.default_rng(31337)

H, I, L, NQ, NKV, D, V, W, P = 16, 24, 4, 4, 2, 8, 40, 3, 2
QPAS, EPS = 12.0, 1e-6
THETA, FACTOR, LOCAL = 1000.0, 2.0, 100.0
ids = np.array([2, 7, 39, 11, 5, 5, 23, 1, 30, 17])
T = len(ids)

weights = {}
def mat(name, shape, sd):
    weights[name] = rng.normal(0.0, sd, size=shape).astype(np.float32)
    return weights[name].astype(np.float64)

pre = "language_model.model."
E = mat(pre + "embed_tokens.weight", (V, H), 0.5)
layers = []
for i in range(L):
    p = pre + f"layers.{i}."
    layers.append(dict(
        q=mat(p + "self_attn.q_proj.weight", (NQ * D, H), 0.3),
        k=mat(p + "self_attn.k_proj.weight", (NKV * D, H), 0.3),
        v=mat(p + "self_attn.v_proj.weight", (NKV * D, H), 0.3),
        o=mat(p + "self_attn.o_proj.weight", (H, NQ * D), 0.3),
        qn=mat(p + "self_attn.q_norm.weight", (D,), 0.5),
        kn=mat(p + "self_attn.k_norm.weight", (D,), 0.5),
        n_in=mat(p + "input_layernorm.weight", (H,), 0.5),
        n_pa=mat(p + "post_attention_layernorm.weight", (H,), 0.5),
        n_pf=mat(p + "pre_feedforward_layernorm.weight", (H,), 0.5),
        n_po=mat(p + "post_feedforward_layernorm.weight", (H,), 0.5),
        gate=mat(p + "mlp.gate_proj.weight", (I, H), 0.3),
        up=mat(p + "mlp.up_proj.weight", (I, H), 0.3),
        down=mat(p + "mlp.down_proj.weight", (H, I), 0.3),
    ))
final_norm = mat(pre + "norm.weight", (H,), 0.5)
vision_name = "vision_tower.vision_model.post_layernorm.weight"
mat(vision_name, (4,), 1.0)


def norm(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * (1.0 + w)


def gelu_tanh(u):
    return 0.5 * u * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (u + 0.044715 * u ** 3)))


def rope(x, base, scale):  # x [heads, T, D], half-split pairs (i, i + D/2)
    half = D // 2
    inv = base ** (-np.arange(half) * 2.0 / D)
    ang = (np.arange(T)[:, None] * scale) * inv[None, :]
    cos, sin = np.cos(ang), np.sin(ang)
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


x = E[ids] * np.sqrt(H)  # float64 reference: the bf16 rounding of sqrt(H) does not apply to f32
for i, lw in enumerate(layers):
    is_global = (i + 1) % P == 0
    h = norm(x, lw["n_in"])
    q = (h @ lw["q"].T).reshape(T, NQ, D).transpose(1, 0, 2)
    k = (h @ lw["k"].T).reshape(T, NKV, D).transpose(1, 0, 2)
    v = (h @ lw["v"].T).reshape(T, NKV, D).transpose(1, 0, 2)
    q, k = norm(q, lw["qn"]), norm(k, lw["kn"])
    base, scale = (THETA, 1.0 / FACTOR) if is_global else (LOCAL, 1.0)
    q, k = rope(q, base, scale), rope(k, base, scale)
    qi, kj = np.arange(T)[:, None], np.arange(T)[None, :]
    visible = kj <= qi
    if not is_global:
        visible &= kj > qi - W
    o = np.zeros((NQ, T, D))
    for hq in range(NQ):
        hk = hq // (NQ // NKV)
        s = (q[hq] @ k[hk].T) * QPAS ** -0.5
        s = np.where(visible, s, -np.inf)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        o[hq] = (s / s.sum(axis=-1, keepdims=True)) @ v[hk]
    a = o.transpose(1, 0, 2).reshape(T, NQ * D) @ lw["o"].T
    x = x + norm(a, lw["n_pa"])
    h = norm(x, lw["n_pf"])
    m = (gelu_tanh(h @ lw["gate"].T) * (h @ lw["up"].T)) @ lw["down"].T
    x = x + norm(m, lw["n_po"])
logits = norm(x, final_norm) @ E.T

# safetensors (F32), keys sorted, header padded to 8 bytes.
header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
for name in sorted(weights):
    a = np.ascontiguousarray(weights[name], dtype="<f4")
    header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
    blobs.append(a.tobytes())
    off += a.nbytes
hb = json.dumps(header, separators=(",", ":")).encode()
hb += b" " * ((8 - len(hb) % 8) % 8)
with open(os.path.join(out_dir, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))

config = {
    "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
    "eos_token_id": [1, 106],
    "text_config": {
        "model_type": "gemma3_text", "hidden_size": H, "intermediate_size": I,
        "num_hidden_layers": L, "num_attention_heads": NQ, "num_key_value_heads": NKV,
        "head_dim": D, "vocab_size": V, "sliding_window": W, "sliding_window_pattern": P,
        "query_pre_attn_scalar": QPAS, "rope_theta": THETA, "rope_local_base_freq": LOCAL,
        "rope_scaling": {"rope_type": "linear", "factor": FACTOR},
    },
    "vision_config": {"hidden_size": 4},
}
with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
    json.dump({"eos_token_id": [1, 107]}, f)
with open(os.path.join(out_dir, "logits.json"), "w") as f:
    json.dump({"tokens": ids.tolist(), "shape": [1, T, V],
               "logits": [float(v) for v in logits.reshape(-1)]}, f)

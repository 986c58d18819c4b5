#!/usr/bin/env python3
"""Reference files for mx's io tests, written by NumPy and by a minimal
safetensors writer that follows the published format (8-byte little-endian
header size, JSON header, raw little-endian data). Writes tests/data/mx/io/.

Run from the repository root: /usr/bin/python3 tools/reference/io_refs.py
"""
import json
import os
import struct

import numpy as np

out = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "mx", "io")
os.makedirs(out, exist_ok=True)

values = {
    "f32": np.arange(12, dtype=np.float32).reshape(3, 4) / 4,
    "f64_fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3) + 0.5),
    "i64_big_endian": np.array([1, -2, 3 << 40], dtype=">i8"),
    "u8": np.array([0, 7, 255], dtype=np.uint8),
    "b1": np.array([[True, False], [False, True]]),
    "f16": np.array([1.5, -0.25, 65504.0], dtype=np.float16),
    "c64": np.array([1 + 2j, -3.5 - 0.5j], dtype=np.complex64),
    "i32_scalar": np.array(42, dtype=np.int32),
    "empty": np.zeros((0, 3), dtype=np.float32),
}
expect = {}
for name, v in values.items():
    np.save(os.path.join(out, name + ".npy"), v)
    flat = v.ravel(order="C")
    if np.iscomplexobj(flat):
        data = [[float(z.real), float(z.imag)] for z in flat]
    else:
        data = [float(x) for x in flat]
    expect[name] = {"shape": list(v.shape), "data": data}
np.savez(os.path.join(out, "stored.npz"), a=values["f32"], b=values["u8"])
np.savez_compressed(os.path.join(out, "compressed.npz"), a=values["f32"], b=values["u8"])


def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# bfloat16 as the top 16 bits of float32 (values chosen to be exact in bfloat16).
bf = np.array([1.0, -2.5, 3.140625], dtype=np.float32).view(np.uint32) >> 16
write_safetensors(
    os.path.join(out, "model.safetensors"),
    {
        "model.embed.weight": ("F32", values["f32"]),
        "model.norm.weight": ("BF16", bf.astype(np.uint16)),
        "model.ids": ("I64", np.array([5, -6], dtype=np.int64)),
        "model.mask": ("BOOL", np.array([True, False, True])),
    },
    metadata={"format": "mlx"},
)
write_safetensors(os.path.join(out, "shard-00001.safetensors"), {"a.weight": ("F32", np.ones((2, 2), np.float32))})
write_safetensors(os.path.join(out, "shard-00002.safetensors"), {"b.weight": ("F16", np.full((3,), 2, np.float16))})
with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": 22},
               "weight_map": {"a.weight": "shard-00001.safetensors", "b.weight": "shard-00002.safetensors"}}, f)
expect["safetensors"] = {"model.norm.weight": [1.0, -2.5, 3.140625]}
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expect, f, indent=1)
print("wrote", os.path.normpath(out))

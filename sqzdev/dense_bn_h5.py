"""A weights-only Keras .h5 (the ``save_weights`` layout) of Dense + BatchNormalization layers, written with
h5py alone (no TensorFlow), deterministic for a seed.

``write(path, 12, 16, 0)`` (64 tensors) reproduces the header-fallback bug of format 1.0 writers
before the fix: the compressed header shrank as the offsets it listed grew, so the writer stored the
whole header uncompressed (23 KB instead of about 1.2 KB). tests/test_format_v11.py keeps it as a
regression test; tools/bench_overhead.py measures it.
"""
from __future__ import annotations

import numpy as np


def write(path, n_pairs: int, units: int, seed: int, bias_every: int = 3) -> None:
    import h5py

    rng = np.random.default_rng(seed)
    names = []
    with h5py.File(path, "w") as f:
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.14.0"

        def layer(name, weights):
            g = f.create_group(name)
            names.append(name.encode())
            g.attrs["weight_names"] = np.array([f"{name}/{w}:0".encode() for w, _ in weights])
            sub = g.create_group(name)
            for w, a in weights:
                sub.create_dataset(f"{w}:0", data=a)

        for i in range(n_pairs):
            suffix = f"_{i}" if i else ""
            ws = [("kernel", rng.normal(0, 0.1, (units, units)).astype(np.float32))]
            if i % bias_every == 0:
                ws.append(("bias", rng.normal(0, 0.01, (units,)).astype(np.float32)))
            layer(f"dense{suffix}", ws)
            layer(f"batch_normalization{suffix}", [
                ("gamma", (1 + rng.normal(0, 0.1, units)).astype(np.float32)),
                ("beta", rng.normal(0, 0.1, units).astype(np.float32)),
                ("moving_mean", rng.normal(0, 0.1, units).astype(np.float32)),
                ("moving_variance", (1 + rng.random(units)).astype(np.float32))])
        f.attrs["layer_names"] = np.array(names)

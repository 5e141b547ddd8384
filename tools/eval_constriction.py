"""The brief evaluation of `constriction` behind spec/entropy-cabac.md's choice of our own coder.

    python3 -m venv .venv-c && .venv-c/bin/pip install constriction numpy && .venv-c/bin/python tools/eval_constriction.py

Codes 10^6 rounded Laplace(0, 0.4) integers with constriction's queue range coder and a static
categorical model of their empirical frequencies (the table itself not counted), and prints bits per
value against the order-0 entropy and the encode / decode throughput through its Python API.
constriction is not a dependency of squeezefmt; this script only documents the comparison.
"""
import time

import constriction
import numpy as np

rng = np.random.default_rng(0)
q = np.rint(rng.laplace(0, 0.4, 1_000_000)).astype(np.int32)
vals, counts = np.unique(q, return_counts=True)
p = counts / counts.sum()
entropy = float(-(p * np.log2(p)).sum())
model = constriction.stream.model.Categorical(p.astype(np.float64), perfect=False)
sym = (q - vals.min()).astype(np.int32)
t = time.perf_counter()
enc = constriction.stream.queue.RangeEncoder()
enc.encode(sym, model)
words = enc.get_compressed()
t_enc = time.perf_counter() - t
t = time.perf_counter()
out = constriction.stream.queue.RangeDecoder(words).decode(model, sym.size)
t_dec = time.perf_counter() - t
assert np.array_equal(out, sym)
print(f"constriction range coder, static categorical model: {words.size * 32 / q.size:.4f} bits/value "
      f"(order-0 entropy {entropy:.4f}); encode {q.size / t_enc / 1e6:.1f} M/s, decode {q.size / t_dec / 1e6:.1f} M/s")

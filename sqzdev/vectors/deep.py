"""Generate the frozen ``quant``, ``cluster`` and ``sparse`` codec vectors (spec/vectors/{quant,cluster,sparse}/).

    .venv/bin/python tools/make_deep_vectors.py

Existing files are never overwritten (vectors are frozen; the tests decode them forever); the
script adds whatever is missing and rewrites each directory's MANIFEST.json from the files present.

- ``valid/<name>.sqz`` + ``valid/<name>.npz``: the .npz holds what each tensor decodes to (for the
  lossy encodings: the decoder output frozen at generation time; decoding is deterministic float
  arithmetic, so a conforming reader reproduces it bit for bit).
- ``broken/<ErrorClass>__<what>.sqz``: a conforming reader must raise that error class (or a
  subclass) when it decodes the file's tensor; every checksum is correct, only the codec's stream,
  side information or configuration lies.
"""
from __future__ import annotations

import os

import numpy as np

import squeezefmt  # noqa: E402
from sqzdev import VECTORS  # noqa: E402
from sqzdev.vectors.core import write_manifest, write_new  # noqa: E402
from squeezefmt.codecs.bytegroup import ByteGroup  # noqa: E402
from squeezefmt.codecs.cluster import Cluster  # noqa: E402
from squeezefmt.entropy.varint import uvarint  # noqa: E402
from squeezefmt.codecs.quantize import Quantize  # noqa: E402
from squeezefmt.codecs.raw import Raw  # noqa: E402
from squeezefmt.codecs.sparse import Sparse, encode_uints  # noqa: E402
from squeezefmt.entropy import huffman  # noqa: E402

ROOT = VECTORS
KINDS = ("quant", "cluster", "sparse")


def _pruned(rng, shape, sparsity, signed=False, dtype=np.float32):
    w = rng.normal(0, 0.05, shape)
    w[np.abs(w) < np.quantile(np.abs(w), sparsity)] = 0.0
    if signed:
        w = np.where(w == 0, np.copysign(0.0, rng.normal(size=shape)), w)
    return w.astype(dtype)


def valid_cases():
    """(kind, stem, arrays, codecs) of every valid vector; re-encoding must give the frozen bytes."""
    rng = np.random.default_rng(20261125)
    w = _pruned(rng, (32, 16), 0.3)
    conv = rng.normal(0, 0.1, (3, 3, 4, 8)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)
    yield "quant", "quant_8bit_per_tensor", {"w": w}, {"w": Quantize(8)}
    yield "quant", "quant_4bit_per_channel", {"conv": conv}, {"conv": Quantize(4, per_channel=True)}
    yield "quant", "quant_3bit_axis0_float16", {"h": conv.astype(np.float16)}, {"h": Quantize(3, True, 0)}
    yield "quant", "quant_16bit_float64", {"d": rng.normal(0, 1, (40,))}, {"d": Quantize(16, per_channel=True)}
    yield "quant", "quant_1bit_edge_shapes", {"e": np.zeros((0, 3), np.float32), "s": np.float32(-2.5).reshape(()),
                                              "z": np.zeros((4, 4), np.float32)}, \
        {"e": Quantize(1), "s": Quantize(1), "z": Quantize(1, True)}

    book = np.sort(rng.normal(0, 0.05, 14)).astype(np.float32)
    clustered = np.concatenate([book, [0.0, -0.0]]).astype(np.float32)[rng.integers(0, 16, (24, 20))]
    yield "cluster", "cluster_exact_16_signed_zeros", {"c": clustered}, {"c": Cluster(4, exact=True)}
    yield "cluster", "cluster_exact_int8_palette", {"p": rng.choice(np.int8([-7, 0, 3, 100]), (9, 9))}, \
        {"p": Cluster(2, exact=True)}
    yield "cluster", "cluster_kmeans_pruned_float32", {"k": _pruned(rng, (40, 30), 0.7)}, {"k": Cluster(3)}
    yield "cluster", "cluster_kmeans_float16_codebook", {"k": rng.normal(0, 1, (64,)).astype(np.float32)}, \
        {"k": Cluster(2, init="kmeans++", codebook_dtype="float16", seed=5)}
    yield "cluster", "cluster_300_values_uint16_indices", {"u": np.arange(300, dtype=np.float32)[rng.integers(0, 300, 900)]}, \
        {"u": Cluster(9, exact=True)}
    yield "cluster", "cluster_empty", {"e": np.zeros((2, 0), np.float32)}, {"e": Cluster(4)}

    special = _pruned(rng, (20, 10), 0.7, signed=True)
    special[3, 4] = np.float32(np.nan)
    yield "sparse", "sparse_raw_signed_zeros_nan", {"w": special}, {"w": Sparse(Raw())}
    yield "sparse", "sparse_bytegroup_conv_90", {"conv": _pruned(rng, (3, 3, 8, 16), 0.9)}, {"conv": Sparse(ByteGroup(19))}
    long = np.zeros(70000, np.float32)
    long[[0, 1, 5, 300, 40000, 69999]] = [1, 2, 3, 4, 5, 6]
    ints = np.zeros((16, 8), np.int32)
    ints[[0, 3, 9, 15], [7, 0, 4, 2]] = [7, -3, 1, 2**31 - 1]
    yield "sparse", "sparse_escapes_long_vector", {"v": long, "i": ints}, {"v": Sparse(Raw()), "i": Sparse(Raw())}
    yield "sparse", "sparse_cluster_values_pruned", {"k": rng.normal(0, 0.05, (30, 20)).astype(np.float32)}, \
        {"k": Sparse(Cluster(3), sparsity=0.8)}
    yield "sparse", "sparse_quant_values", {"k": _pruned(rng, (16, 16), 0.75, signed=True)}, {"k": Sparse(Quantize(6))}
    yield "sparse", "sparse_all_zero", {"z": np.zeros((6, 7), np.float32), "n": np.full((8, 8), -0.0, np.float32)}, \
        {"z": Sparse(), "n": Sparse()}


def expected_arrays(data: bytes) -> dict[str, np.ndarray]:
    with squeezefmt.open(data) as f:
        return {name: f.tensor(name) for name in f.keys()}


def broken_cases(kind: str, bases: dict[str, bytes]):
    from sqzdev.vectors.core import first_tensor_mutators, forge, split

    side, entry = first_tensor_mutators()

    if kind == "quant":
        h, s = split(bases["quant_4bit_per_channel"])        # 8 channels: 8 f32 steps, 8 u8 zero points
        st = s[0]
        yield "StreamError__quant_zero_point_past_qmax", forge(h, [st[:32] + bytes([16]) + st[33:]])
        yield "StreamError__quant_negative_step", forge(h, [np.float32(-0.5).tobytes() + st[4:]])
        yield "StreamError__quant_nan_step", forge(h, [np.float32(np.nan).tobytes() + st[4:]])
        yield "StreamError__quant_truncated_indices", forge(h, [st[:-1]])
        yield "StreamError__quant_trailing_bytes", forge(h, [st + b"\x00"])
        yield "StreamError__quant_params_only", forge(h, [st[:40]])
        yield "StreamError__quant_declared_int32", forge(h, s, mutate=entry(lambda e: e.__setitem__("dtype", "int32")))
        yield "StreamError__quant_bits_9", forge(h, s, mutate=entry(lambda e: e["codec"]["config"].__setitem__("bits", 9)))
        yield "StreamError__quant_axis_out_of_range", forge(
            h, s, mutate=entry(lambda e: e["codec"]["config"].__setitem__("axis", 4)))
        # two channels, zero points 0 and 3 (symbol shift 3 and 0): symbol 0 in channel 0 means q = -3
        h2, _ = split(squeezefmt.save({"x": np.zeros((1, 2), np.float32)}, codecs={"x": Quantize(2, True)}))
        params = np.float32([1, 1]).tobytes() + bytes([0, 3])
        yield "StreamError__quant_index_outside_channel", forge(
            h2, [params + huffman.encode(np.array([0, 6], np.uint8), alphabet_size=7)])
    elif kind == "cluster":
        h, s = split(bases["cluster_exact_16_signed_zeros"])  # 480 elements, K = 16 float32 entries
        st = s[0]
        book = st[1:1 + 64]
        idx = np.zeros(480, np.uint8)
        idx[7] = 16
        yield "StreamError__cluster_index_past_codebook", forge(h, [uvarint(16) + book + huffman.encode(idx, alphabet_size=17)])
        yield "StreamError__cluster_codebook_size_zero", forge(h, [uvarint(0) + st[1:]])
        yield "StreamError__cluster_codebook_larger_than_tensor", forge(h, [uvarint(481) + st[2:]])
        yield "StreamError__cluster_truncated_codebook", forge(h, [st[:40]])
        yield "StreamError__cluster_trailing_bytes", forge(h, [st + b"\x00"])
        yield "StreamError__cluster_non_minimal_size", forge(h, [b"\x90\x00" + st[1:]])
        yield "StreamError__cluster_codebook_dtype_int8", forge(h, s, mutate=side(lambda d: d.__setitem__("codebook", "int8")))
        yield "StreamError__cluster_side_missing", forge(h, s, mutate=side(lambda d: d.clear()))
        yield "StreamError__cluster_float_codebook_for_int_tensor", forge(
            h, s, mutate=entry(lambda e: e.__setitem__("dtype", "int32")))
        yield "StreamError__cluster_init_unknown", forge(
            h, s, mutate=entry(lambda e: e["codec"]["config"].__setitem__("init", "random")))
    else:
        h, s = split(bases["sparse_raw_signed_zeros_nan"])   # 20x10, raw values
        st, vals = s[0], s[1]

        def structure(rowlens, gaps, negs=None, count=None):
            a, b = encode_uints(np.array(rowlens)), encode_uints(np.array(gaps))
            tail = uvarint(0) if negs is None else uvarint(count if count is not None else len(negs)) + encode_uints(np.array(negs))
            return uvarint(len(a)) + a + uvarint(len(b)) + b + tail

        yield "StreamError__sparse_row_count_past_cols", forge(h, [structure([11] + [0] * 19, [0] * 11), vals[:44]])
        yield "StreamError__sparse_column_past_row_end", forge(h, [structure([2] + [0] * 19, [5, 4]), vals[:8]])
        yield "StreamError__sparse_values_count_mismatch", forge(h, [st, vals[:-4]])
        yield "StreamError__sparse_negative_zero_past_end", forge(h, [structure([0] * 20, [], [0] * 199 + [1]), b""])
        yield "StreamError__sparse_more_negative_zeros_than_zeros", forge(h, [structure([0] * 20, [], [0], count=201), b""])
        yield "StreamError__sparse_structure_trailing_bytes", forge(h, [st + b"\x00", vals])
        yield "StreamError__sparse_structure_truncated", forge(h, [st[:5], vals])
        nested = {"codec": Sparse().describe(), "side": {"values": {"codec": Raw().describe(), "side": {}, "streams": 1}},
                  "streams": 1}
        yield "StreamError__sparse_nested_sparse", forge(h, s, mutate=side(lambda d: d.__setitem__("values", nested)))
        yield "StreamError__sparse_nested_stream_count_lies", forge(
            h, s, mutate=side(lambda d: d["values"].__setitem__("streams", 2)))
        yield "UnknownCodecError__sparse_values_codec_unknown", forge(
            h, s, mutate=side(lambda d: d["values"]["codec"].__setitem__("id", "lzma9000")))
        one = np.zeros(64, np.int32)
        one[2] = 5
        hi, si = split(squeezefmt.save({"i": one}, codecs={"i": Sparse(Raw())}))
        assert hi["tensors"][0]["codec"]["id"] == "sparse"
        yield "StreamError__sparse_negative_zeros_in_int_tensor", forge(hi, [structure([1], [2], [0]), si[1]])


def main() -> int:
    added = []
    bases: dict[str, bytes] = {}
    for kind, stem, arrays, codecs in valid_cases():
        valid = os.path.join(ROOT, kind, "valid")
        os.makedirs(valid, exist_ok=True)
        data = squeezefmt.save(arrays, None, codecs=codecs).replace(squeezefmt.__version__.encode(), b"0.1.0")
        with squeezefmt.open(data) as f:
            assert any(f.info(n).codec == kind for n in f.keys()), stem
        sqz = os.path.join(valid, stem + ".sqz")
        if write_new(sqz, data):
            added.append(sqz)
            with open(os.path.join(valid, stem + ".npz"), "wb") as f:
                np.savez(f, **expected_arrays(data))
            added.append(stem + ".npz")
        with open(sqz, "rb") as f:
            bases[stem] = f.read()
    for kind in KINDS:
        broken = os.path.join(ROOT, kind, "broken")
        os.makedirs(broken, exist_ok=True)
        for name, data in broken_cases(kind, bases):
            if write_new(os.path.join(broken, name + ".sqz"), data):
                added.append(name)
        write_manifest(os.path.join(ROOT, kind))
    print(f"added {len(added)} file(s): {', '.join(os.path.basename(a) for a in added) or 'none'}")
    return 0

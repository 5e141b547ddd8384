"""Generate the frozen ``tt`` codec vectors in spec/vectors/tt/ (valid and deliberately broken files).

    .venv/bin/python tools/make_tt_vectors.py

Existing files are never overwritten (vectors are frozen; the tests decode them forever); the
script adds whatever is missing and rewrites spec/vectors/tt/MANIFEST.json from the files present.

- ``valid/<name>.sqz`` + ``valid/<name>.npz``: the .npz holds, per tensor, its cores
  (``<tensor>.core_<k>``, exact) and its dense matrix (``<tensor>.dense``; compare with a float tolerance:
  the contraction order of a reader may differ).
- ``broken/<ErrorClass>__<what>.sqz``: a conforming reader must raise that error class (or a subclass)
  when it decodes the file's tensor; every checksum in these files is correct, only the tt side
  information or the nested codec lies.
"""
from __future__ import annotations

import os

import numpy as np

import squeezefmt  # noqa: E402
from sqzdev import VECTORS  # noqa: E402
from sqzdev.vectors.core import write_manifest, write_new  # noqa: E402
from squeezefmt.codecs.bytegroup import ByteGroup  # noqa: E402
from squeezefmt.codecs.raw import Raw  # noqa: E402
from squeezefmt.codecs.tt import TT, TTCores  # noqa: E402
from squeezefmt.tt_math import TTMatrix  # noqa: E402

ROOT = os.path.join(VECTORS, "tt")
VALID = os.path.join(ROOT, "valid")
BROKEN = os.path.join(ROOT, "broken")


def _cores(rng, dims_in, dims_out, ranks, dtype):
    return TTCores(TTMatrix(tuple(rng.normal(0, 0.5, (ranks[k], dims_in[k], dims_out[k], ranks[k + 1])).astype(dtype)
                                  for k in range(len(dims_in)))))


def valid_cases():
    """(stem, arrays, codecs) of every valid vector; re-encoding them must give the frozen bytes."""
    rng = np.random.default_rng(20261124)
    t3f_like = _cores(rng, [4, 3, 2], [2, 3, 4], [1, 3, 2, 1], np.float32)
    yield "tt_cores_raw", {"layer/tt_matrix": t3f_like}, {"layer/tt_matrix": TT(inner=Raw())}
    yield "tt_cores_bytegroup", {"layer/tt_matrix": t3f_like}, {"layer/tt_matrix": TT(inner=ByteGroup(level=19))}
    i, j = np.meshgrid(np.arange(24), np.arange(20), indexing="ij")
    smooth = (np.sin(i / 5.0) * np.cos(j / 7.0) + 0.1 * np.sin((i + j) / 3.0)).astype(np.float64)
    yield "tt_svd_float64_d2", {"w": smooth}, {"w": TT(inner=ByteGroup(level=19), max_rank=3,
                                                      input_dims=[6, 4], output_dims=[5, 4])}
    yield "tt_svd_float16_auto", {"w": smooth.astype(np.float16)}, {"w": TT(inner=Raw(), tol=0.05)}


def expected_arrays(data: bytes) -> dict[str, np.ndarray]:
    from squeezefmt.codecs.tt import read_tt

    out = {}
    with squeezefmt.open(data) as f:
        for name in f.keys():
            tt = read_tt(f, name)
            for k, core in enumerate(tt.cores):
                out[f"{name}.core_{k}"] = core
            out[f"{name}.dense"] = f.tensor(name)
    return out


def broken_cases(base: bytes):
    """Mutations of ``tt_cores_raw`` (one tt tensor, 3 raw cores of shapes (1,4,2,3), (3,3,3,2), (2,2,4,1))."""
    from sqzdev.vectors.core import first_tensor_mutators, forge, split

    header, streams = split(base)
    side, entry = first_tensor_mutators()

    def put(key, value):
        return side(lambda s: s.__setitem__(key, value))

    yield "StreamError__rank_exceeds_bound", forge(header, streams, mutate=put("ranks", [1, 9, 2, 1]))
    yield "StreamError__first_rank_not_one", forge(header, streams, mutate=put("ranks", [2, 3, 2, 1]))
    yield "StreamError__last_rank_not_one", forge(header, streams, mutate=put("ranks", [1, 3, 2, 2]))
    yield "StreamError__dims_do_not_multiply_to_shape", forge(header, streams, mutate=put("input_dims", [4, 3, 3]))
    yield "StreamError__dims_length_mismatch", forge(header, streams, mutate=put("output_dims", [2, 12]))
    yield "StreamError__dims_not_integers", forge(header, streams, mutate=put("input_dims", [4.0, 3, 2]))
    yield "StreamError__ranks_missing", forge(header, streams, mutate=side(lambda s: s.pop("ranks")))
    yield "StreamError__cores_not_a_list", forge(header, streams, mutate=put("cores", {"0": 1}))
    yield "StreamError__core_count_mismatch", forge(header, streams, mutate=side(lambda s: s["cores"].pop()))

    def lie_count(s):
        s["cores"][0]["streams"] = 2
    yield "StreamError__nested_stream_count_lies", forge(header, streams, mutate=side(lie_count))

    def unknown_inner(s):
        s["cores"][1]["codec"]["id"] = "lzma9000"
    yield "UnknownCodecError__nested_codec_unknown", forge(header, streams, mutate=side(unknown_inner))
    yield "StreamError__declared_dtype_int32", forge(header, streams, mutate=entry(lambda e: e.__setitem__("dtype", "int32")))
    yield "StreamError__declared_shape_3d", forge(header, streams, mutate=entry(lambda e: e.__setitem__("shape", [24, 24, 1])))
    # a raw core whose stream is one element short (checksums recomputed)
    short = list(streams)
    short[2] = short[2][:-4]
    yield "StreamError__core_stream_short", forge(header, short)
    # ranks within every bond bound, but cores larger than the matrix: 4x4 as [2,2] x [2,2] at rank 4
    # (16 + 16 core elements for 16 matrix elements)
    small = TTMatrix((np.ones((1, 2, 2, 2), np.float32), np.ones((2, 2, 2, 1), np.float32)))
    h2, _ = split(squeezefmt.save({"m": TTCores(small)}, codecs={"m": TT(inner=Raw())}))
    yield "StreamError__cores_larger_than_matrix", forge(h2, [bytes(16 * 4), bytes(16 * 4)],
                                                         mutate=side(lambda s: s.__setitem__("ranks", [1, 4, 1])))


def main() -> int:
    os.makedirs(VALID, exist_ok=True)
    os.makedirs(BROKEN, exist_ok=True)
    added = []
    base = None
    for stem, arrays, codecs in valid_cases():
        data = squeezefmt.save(arrays, None, codecs=codecs)
        data = data.replace(squeezefmt.__version__.encode(), b"0.1.0")
        if stem == "tt_cores_raw":
            base = data
        sqz = os.path.join(VALID, stem + ".sqz")
        if write_new(sqz, data):
            added.append(sqz)
            with open(os.path.join(VALID, stem + ".npz"), "wb") as f:
                np.savez(f, **expected_arrays(data))
            added.append(stem + ".npz")
    for name, data in broken_cases(base):
        if write_new(os.path.join(BROKEN, name + ".sqz"), data):
            added.append(name)
    write_manifest(ROOT)
    print(f"added {len(added)} file(s): {', '.join(os.path.basename(a) for a in added) or 'none'}")
    return 0

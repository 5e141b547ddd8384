"""The fast decode paths against their references: C gather and dequant (squeezefmt/_decodec.c), block-wise
byte-plane joins from views and zstd readers, zstd straight into the output, reused output buffers."""
from __future__ import annotations

import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

import squeezefmt
from squeezefmt import buffers
from squeezefmt.codecs import bytegroup, quantize, zstd_util
from squeezefmt.codecs.base import TensorSpec
from squeezefmt.codecs.bytegroup import ByteGroup
from squeezefmt.codecs.quantize import Quantize
from squeezefmt.errors import StreamError

needs_c = pytest.mark.skipif(buffers._decodec is None, reason="squeezefmt._decodec not built")
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@needs_c
@given(width=st.sampled_from([1, 2, 4, 8]), wide_idx=st.booleans(), k=st.integers(1, 300),
       n=st.integers(0, 3000), seed=st.integers(0, 2**32 - 1))
def test_c_gather_matches_numpy_take(width, wide_idx, k, n, seed):
    rng = np.random.default_rng(seed)
    k = k if wide_idx else min(k, 256)
    table = rng.integers(0, 2 ** (8 * width) - 1, k, dtype=np.uint64, endpoint=True).astype(UINT[width])
    idx = rng.integers(0, k, n).astype(np.uint16 if wide_idx else np.uint8)
    fast, ref = np.empty(n, UINT[width]), np.empty(n, UINT[width])
    buffers.gather(table, idx, fast)
    buffers.gather_reference(table, idx, ref)
    assert fast.tobytes() == ref.tobytes() == table[idx].tobytes()


@needs_c
def test_c_gather_counts_out_of_range_indices():
    table = np.arange(5, dtype=np.float32)
    idx = np.array([0, 4, 5, 200], np.uint8)
    assert buffers._decodec.gather(table, idx, np.empty(4, np.float32)) == 2
    with pytest.raises(IndexError, match="outside a table of 5"):
        buffers.gather(table, idx, np.empty(4, np.float32))
    with pytest.raises(ValueError, match="one item per index"):
        buffers._decodec.gather(table, idx, np.empty(3, np.float32))


@needs_c
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), axis_pick=st.integers(0, 3),
       bits=st.sampled_from([2, 5, 8, 16]), seed=st.integers(0, 2**32 - 1))
def test_c_dequant_matches_the_numpy_formula(shape, axis_pick, bits, seed):
    rng = np.random.default_rng(seed)
    ax = axis_pick % len(shape)
    channels, qmax = shape[ax], (1 << bits) - 1
    bshape = [1] * len(shape)
    bshape[ax] = channels
    shift = rng.integers(0, 40 if bits <= 8 else 1, channels)
    zp = rng.integers(0, qmax + 1, channels)
    step = (rng.random(channels) * 0.1).astype(np.float32)
    sym = rng.integers(0, qmax + 1, shape) + shift.reshape(bshape)
    sym = sym.astype(np.uint16 if int(sym.max()) > 255 else np.uint8)
    ref = np.empty(shape, np.float32)
    quantize.dequantize_channels_reference(sym, ref, shift.reshape(bshape), zp.reshape(bshape),
                                           step.reshape(bshape), ax, qmax, "float32")
    fast = np.empty(shape, np.float32)
    inner = int(np.prod(shape[ax + 1:], dtype=np.int64))
    bad = buffers._decodec.dequant(sym.reshape(-1), fast.reshape(-1), shift.astype(np.int32), zp.astype(np.int32),
                                   step, inner, qmax)
    assert bad == 0
    assert fast.tobytes() == ref.tobytes()
    sym.reshape(-1)[0] = shift[0] + qmax + 1 if shift[0] + qmax + 1 <= np.iinfo(sym.dtype).max else 0
    if int(sym.reshape(-1)[0]) - int(shift[0]) not in range(qmax + 1):
        assert buffers._decodec.dequant(sym.reshape(-1), fast.reshape(-1), shift.astype(np.int32),
                                        zp.astype(np.int32), step, inner, qmax) == 1


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_quant_per_channel_decode_c_equals_reference(monkeypatch, axis):
    w = np.random.default_rng(axis + 5).normal(0, 0.05, (33, 20, 3)).astype(np.float32)
    codec = Quantize(bits=8, per_channel=True, axis=axis)
    enc = codec.encode(w)
    spec = TensorSpec("float32", w.shape)
    fast = codec.decode(enc.streams, enc.side, spec)
    monkeypatch.setattr(quantize, "_decodec", None)
    monkeypatch.setattr(buffers, "_decodec", None)
    ref = codec.decode(enc.streams, enc.side, spec)
    assert fast.tobytes() == ref.tobytes()


@pytest.mark.parametrize("dtype", ["uint8", "float16", "float32", "float64", "int32"])
def test_bytegroup_blockwise_join_equals_the_reference(monkeypatch, dtype):
    rng = np.random.default_rng(1)
    a = (rng.normal(0, 1, 10007) * 50).astype(dtype)
    if dtype == "float32":  # near-random mantissa planes are stored raw: views of the stream
        a[::2] = rng.random(a[::2].shape)
    enc = ByteGroup(3).encode(a)
    spec = TensorSpec(str(np.dtype(dtype)), a.shape)
    monkeypatch.setattr(bytegroup, "JOIN_BLOCK", 1000)  # many blocks, a partial last one
    fast = ByteGroup(3).decode(enc.streams, enc.side, spec)
    monkeypatch.setattr(bytegroup, "_bytegroupc", None)
    ref = ByteGroup(3).decode(enc.streams, enc.side, spec)
    assert fast.tobytes() == ref.tobytes() == a.tobytes()


def test_frame_reader_checks_the_frame_before_writing():
    data = bytes(range(256)) * 300
    frame = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data)
    out = bytearray(len(data))
    zstd_util.decompress_into(frame, out, "t")
    assert bytes(out) == data
    assert zstd_util.frame_extent(frame, "t")[0] == len(frame)
    with pytest.raises(StreamError, match="trailing"):
        zstd_util.FrameReader(frame + b"\0", len(data), "t")
    with pytest.raises(StreamError, match="truncated"):
        zstd_util.FrameReader(frame[:-5], len(data), "t")
    with pytest.raises(StreamError, match="declares"):
        zstd_util.FrameReader(frame, len(data) + 1, "t")
    with pytest.raises(StreamError, match="not a zstd frame"):
        zstd_util.FrameReader(b"\0" * 20, 5, "t")
    # a raw-block frame whose header claims more content than its blocks hold is refused up front
    raw_block = b"\x28\xb5\x2f\xfd" + bytes([0xA0]) + (1 << 20).to_bytes(4, "little") + \
        (1 | (0 << 1) | (4 << 3)).to_bytes(3, "little") + b"abcd"
    with pytest.raises(StreamError, match="too short"):
        zstd_util.FrameReader(raw_block, 1 << 20, "t")


def test_zstd_codec_decodes_into_its_output():
    w = np.random.default_rng(2).normal(size=(300, 70)).astype(np.float32)
    from squeezefmt.codecs.zstd_codec import Zstd

    data = squeezefmt.save({"w": w}, codecs={"w": Zstd(5)})
    with squeezefmt.open(data) as f:
        out = f.tensor("w")
    assert out.tobytes() == w.tobytes() and out.flags.writeable and out.ctypes.data % buffers.ALIGN == 0


def test_kept_buffers_are_reused_only_when_nothing_references_them():
    before = buffers._pool.max_bytes
    try:
        buffers.keep_buffers(8 << 20)
        n = 1 << 20
        a = buffers.empty_aligned(n, np.uint8, populate=True)
        address = a.ctypes.data
        del a
        b = buffers.empty_aligned(n, np.uint8, populate=True)
        assert b.ctypes.data == address                 # idle: handed out again
        view = b.reshape(16, -1)[3]
        view[:] = 7
        del b
        c = buffers.empty_aligned(n, np.uint8, populate=True)
        assert c.ctypes.data != address                 # a view still uses it
        c[:] = 1
        assert (view == 7).all()
        z = buffers.zeros_aligned(n, np.uint8)           # zero-filled requests never get a kept buffer
        assert not z.any()
        assert buffers.kept_buffer_bytes() <= 8 << 20
    finally:
        buffers._pool.max_bytes = before

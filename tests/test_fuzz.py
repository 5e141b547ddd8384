"""Corruption fuzzing of the decoder: any damaged container raises a SqueezeError, never anything else.

Every byte of the file is covered by a checksum (preamble CRC, header CRC, stream CRCs) or must be
zero padding (checked by verify), so a single changed byte can never decode to a wrong tensor.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import squeezefmt
from squeezefmt import errors
from sqzdev.harness import verify_and_decode


@pytest.fixture(scope="module")
def container():
    rng = np.random.default_rng(5)
    arrays = {
        "w": rng.normal(0, 0.05, (40, 30)).astype(np.float32),
        "b": rng.normal(0, 0.05, (30,)).astype(np.float32),
        "i": rng.integers(0, 9, (500,), dtype=np.int32),
        "h": rng.normal(size=(50,)).astype(np.float16),
    }
    return arrays, squeezefmt.save(arrays, metadata={"k": "v"}, format_version=(1, 0))  # 1.1: test_format_v11.py


@given(st.data())
def test_single_byte_change_is_always_detected(container, data):
    arrays, blob = container
    pos = data.draw(st.integers(0, len(blob) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != blob[pos]))
    broken = blob[:pos] + bytes([new]) + blob[pos + 1:]
    with pytest.raises(errors.SqueezeError):
        verify_and_decode(broken)


def test_every_truncation_is_detected(container):
    _, blob = container
    for n in range(0, len(blob), 7):
        with pytest.raises(errors.SqueezeError):
            verify_and_decode(blob[:n])


@given(st.binary(max_size=2048))
def test_random_bytes_are_rejected(data):
    with pytest.raises(errors.SqueezeError):
        verify_and_decode(data)


@given(st.binary(min_size=1, max_size=512))
def test_garbage_after_valid_preamble(container, tail):
    _, blob = container
    with pytest.raises(errors.SqueezeError):
        verify_and_decode(blob[:40] + tail)


@given(st.data())
def test_lying_header_with_fixed_checksums(container, data):
    """Edit header values (with CRCs recomputed): the reader must refuse or decode exactly."""
    from sqzdev.vectors.core import forge, split

    arrays, blob = container
    header, streams = split(blob)
    t = data.draw(st.integers(0, len(header["tensors"]) - 1))
    field = data.draw(st.sampled_from(["shape", "dtype", "codec_id", "side", "streams"]))
    entry = header["tensors"][t]
    if field == "shape":
        entry["shape"] = data.draw(st.lists(st.integers(0, 2**33), max_size=4))
    elif field == "dtype":
        entry["dtype"] = data.draw(st.sampled_from(["float32", "float16", "int8", "uint64", "bool", "bfloat16"]))
    elif field == "codec_id":
        entry["codec"]["id"] = data.draw(st.sampled_from(["raw", "zstd", "bytegroup"]))
    elif field == "side":
        entry["side"] = data.draw(st.dictionaries(st.sampled_from(["planes", "x"]),
                                                  st.lists(st.sampled_from(["zstd", "raw", "?"]), max_size=9)))
    else:
        k = data.draw(st.integers(0, len(entry["streams"])))
        drop = sum(len(x["streams"]) for x in header["tensors"][:t])
        streams = streams[:drop] + streams[drop + k:] if k < len(entry["streams"]) else streams
        entry["streams"] = entry["streams"][k:] if k < len(entry["streams"]) else entry["streams"]
    forged = forge(header, streams)
    name = entry["name"]
    try:
        with squeezefmt.open(forged) as f:
            out = f.tensor(name)
    except errors.SqueezeError:
        return
    # If the reader accepted it, the result must honour the (edited) declaration and, when the
    # declaration is unchanged in meaning, equal the original.
    assert tuple(out.shape) == tuple(entry["shape"])
    if out.dtype == arrays[name].dtype and out.shape == arrays[name].shape:
        assert np.array_equal(out.view(np.uint8), arrays[name].view(np.uint8))

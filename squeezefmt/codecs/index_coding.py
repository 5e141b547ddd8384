"""Entropy coding of a codec's non-negative indices: canonical Huffman, or the arithmetic coder.

``quant`` and ``cluster`` (and ``sparse`` through them, for its non-zero values) code integer
indices ``0 <= s < alphabet``. Their ``coder`` config option picks how:

- ``"huffman"`` (default; what every file written before the option had): ``spec/entropy-huffman.md``,
  no side information;
- ``"cabac"``: the signed offsets ``s - center`` through ``spec/entropy-cabac.md``, where ``center``
  is the most frequent index (the zero level of a quantizer, the zero cluster); side information
  ``{"coder": "cabac", "center": center}``;
- ``"auto"``: both, keeping the smaller stream (ties: Huffman).

    payload, side = encode_indices(symbols, alphabet, "auto")
    symbols = decode_indices(payload, count, alphabet, side, np.uint8)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..entropy import cabac, huffman
from ..errors import StreamError

CODERS = ("huffman", "cabac", "auto")


def check_coder(value: Any, codec_id: str) -> str:
    if value not in CODERS:
        raise StreamError(f"{codec_id}: coder must be one of {list(CODERS)}, got {value!r}")
    return value


def encode_indices(symbols: np.ndarray, alphabet: int, coder: str) -> tuple[bytes, dict[str, Any]]:
    """(payload, side entries) for unsigned ``symbols < alphabet`` with ``coder``."""
    sym = np.asarray(symbols).reshape(-1)
    best: tuple[bytes, dict[str, Any]] | None = None
    if coder in ("huffman", "auto"):
        best = (huffman.encode(sym, alphabet_size=alphabet), {})
    if coder in ("cabac", "auto"):
        center = int(np.argmax(np.bincount(sym.astype(np.int64), minlength=1))) if sym.size else 0
        payload = cabac.encode_smallest(sym.astype(np.int64) - center)
        if best is None or len(payload) < len(best[0]):
            best = (payload, {"coder": "cabac", "center": center})
    assert best is not None
    return best


def is_huffman(side: dict[str, Any]) -> bool:
    """True when ``side`` selects the Huffman coder (what the one-pass value decoders take)."""
    return side.get("coder", "huffman") == "huffman" and "center" not in side


def decode_indices(data, count: int, alphabet: int, side: dict[str, Any], dtype) -> np.ndarray:
    """Inverse of :func:`encode_indices`: ``count`` indices as ``dtype``, each checked ``< alphabet``."""
    coder = side.get("coder", "huffman")
    if coder == "huffman":
        if "center" in side:
            raise StreamError("side information 'center' belongs to the cabac coder")
        return huffman.decode(data, count, dtype=dtype)
    if coder != "cabac":
        raise StreamError(f"side information 'coder' must be 'huffman' or 'cabac', got {coder!r}")
    center = side.get("center")
    if not isinstance(center, int) or isinstance(center, bool) or not 0 <= center < alphabet:
        raise StreamError(f"side information 'center' must be an integer in [0, {alphabet - 1}], got {center!r}")
    levels = cabac.decode(data, count)
    if count:
        lo, hi = int(levels.min()) + center, int(levels.max()) + center
        if lo < 0 or hi >= alphabet:
            raise StreamError(f"an index decoded outside 0..{alphabet - 1}")
    return (levels + center).astype(dtype)

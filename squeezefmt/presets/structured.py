"""Exact structure in a tensor: pruned (many zeros) or clustered (few distinct values) weights.

:func:`structured_candidates` lists the exact codecs worth trying for such a tensor (``sparse`` CSR,
an exact ``cluster`` codebook) and :class:`Choice` keeps whichever stores smallest. The lossless
presets and the lossy kernel policies (:mod:`squeezefmt.presets.deep`) both use them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..codecs import Codec, Encoded
from ..codecs.cluster import Cluster, distinct_count
from ..codecs.sparse import Sparse, zero_fraction
from ..container.header import dumps as header_dumps
from ..container.layout import align as _align

#: A tensor with at least this fraction of exact zeros is tried as ``sparse`` (CSR).
SPARSE_MIN_ZERO_FRACTION = 0.2
#: A tensor with at most this many distinct values is tried as an exact ``cluster`` codebook.
CLUSTER_MAX_DISTINCT = 256


class Choice(Codec):
    """Several candidate codecs for one tensor: ``encode`` keeps the one that stores smallest.

    Not a stream kind (never registered or written): after ``encode`` it describes itself as the
    winner, so ``encode_tensor`` stores the winner's id. Size = streams padded to the container's
    alignment + side information + codec description. Ties go to the earlier candidate.
    """

    codec_id = "choice"

    def __init__(self, candidates):
        self.candidates = list(candidates)
        self.chosen = self.candidates[0]
        self.lossless = all(c.lossless for c in self.candidates)

    def encode(self, array: np.ndarray) -> Encoded:
        best = None
        for codec in self.candidates:
            enc = codec.encode(array)
            cost = (sum(_align(len(s)) for s in enc.streams) + len(header_dumps(enc.side))
                    + len(header_dumps(codec.describe())))
            if best is None or cost < best[0]:
                best = (cost, codec, enc)
        self.chosen = best[1]
        return best[2]

    def describe(self) -> dict[str, Any]:
        return self.chosen.describe()


def structured_candidates(array: np.ndarray, values: Codec) -> list[Codec]:
    """Exact codecs worth trying besides ``values`` for a pruned or clustered tensor.

    Many exact zeros (>= SPARSE_MIN_ZERO_FRACTION): ``sparse`` with the non-zeros through
    ``values``. At most CLUSTER_MAX_DISTINCT distinct values: an exact ``cluster`` codebook (and,
    when both hold, ``sparse`` over an exact codebook of the non-zeros).
    """
    if not isinstance(array, np.ndarray) or array.size < 16:
        return []
    out: list[Codec] = []
    distinct = distinct_count(array, CLUSTER_MAX_DISTINCT)
    if distinct is not None:
        out.append(Cluster(bits=max(1, (distinct - 1).bit_length()), exact=True))
    if zero_fraction(array) >= SPARSE_MIN_ZERO_FRACTION:
        out.append(Sparse(values=values))
        if distinct is not None:
            out.append(Sparse(values=Cluster(bits=max(1, (distinct - 1).bit_length()), exact=True)))
    return out

"""The frozen vectors of spec/vectors: valid cases (re-encoded byte-identically by the tests), broken
cases, the forging helpers that build them, and writers that only ever add missing files.

One module per family: :mod:`.core` (container), :mod:`.deep` (quant/cluster/sparse), :mod:`.epr`, :mod:`.tt`.
The scripts ``tools/make_*vectors.py`` call their ``main``.
"""

"""Bit-level entropy coders shared by the codecs (numpy only, no TensorFlow).

- :mod:`squeezefmt.entropy.gamma` -- run-length Elias gamma, bit-compatible with
  tensorflow-compression's ``run_length_gamma_encode`` / ``PowerLawEntropyModel`` (spec/entropy-gamma.md).
  Fast path: the C extension ``_gammac``; readable reference: ``gamma_ref``.
- :mod:`squeezefmt.entropy.huffman` -- canonical, length-limited Huffman with a raw bit-packing fallback,
  plus ``pack_bits`` / ``unpack_bits`` (spec/entropy-huffman.md). Fast path: ``_huffmanc``; reference: ``huffman_ref``.
- :mod:`squeezefmt.entropy.cabac` -- context-adaptive binary arithmetic coding of signed integers
  (DeepCABAC style) with a RAW fallback, and the rate-distortion quantizer ``rdoq`` on its rate
  estimates (spec/entropy-cabac.md). Fast path: ``_cabacc``; reference: ``cabac_ref``.

Submodules are imported on demand; importing this package loads nothing heavy.
"""

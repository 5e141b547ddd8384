"""Transforms of a Keras archive before encoding: archive -> archive whose tensors may be PreEncoded.

:mod:`.epr`: EPR-trained layers -> integer ``epr`` latents. :mod:`.tt`: TT layers -> one ``tt`` tensor of
cores each; TT-SVD of Dense kernels (``TTOptions``, an option of :func:`squeezefmt.keras.pack`).
"""

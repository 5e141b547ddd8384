"""Federated broadcast: round payloads, deltas against the last round, Flower integration.

Numpy + zstandard only (no TensorFlow; a Keras model is accepted through ``get_weights()``).
The payload rules are normative in spec/federated.md.

Server, once per round::

    from squeezefmt import federated as fl
    enc = fl.BroadcastEncoder("lossy-delta")          # or "lossless", "lossless-delta", "lossy", "lossy-delta-quant"
    enc = fl.BroadcastEncoder("lossy-delta", carry_residual=True)   # FedAvg: models built on what clients hold
    payload = enc.encode(global_weights)              # bytes for every client that is up to date
    enc.payload_for(held_hash)                        # a client that missed rounds: full catch-up

Client::

    dec = fl.BroadcastDecoder()
    weights = dec.decode(payload)                     # BaseMismatchError if it holds another base

Stateless: ``fl.encode_model(weights, preset="lossless")`` / ``fl.decode_model(payload, base=...)``,
``fl.peek(payload)`` reads kind, round, state and base hashes from the header alone, and
``fl.content_hash(weights)`` is the state hash. Flower: :mod:`squeezefmt.federated.flower`
(``pip install squeezefmt[flower]``).
"""
from .delta import BroadcastDecoder, BroadcastEncoder, RoundReport, UpdateEncoder, decode_update
from .payload import (
    METADATA_KEY, PAYLOAD_VERSION, PayloadInfo, apply_delta, content_hash, decode_model, encode_model, make_delta,
    peek,
)
from .presets import PRESETS, FederatedPreset, get_preset

__all__ = [
    "BroadcastDecoder", "BroadcastEncoder", "RoundReport", "UpdateEncoder", "decode_update", "METADATA_KEY",
    "PAYLOAD_VERSION", "PayloadInfo", "apply_delta", "content_hash", "decode_model", "encode_model", "make_delta",
    "peek", "PRESETS", "FederatedPreset", "get_preset",
]

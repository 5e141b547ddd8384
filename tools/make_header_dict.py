"""Make the frozen format 1.1 header dictionary (spec/header-dict-1.txt) -- run once, never again.

The dictionary is plain header text: the compact (1.1) headers of a few reference Keras models
built here with the common layers and their default arguments (tf.keras 2.14), packed losslessly,
with the values that are pure noise (CRCs, stream lengths, source digests) zeroed. zstd uses it as a
raw-content dictionary, so a header that repeats Keras boilerplate refers to it instead of spelling
it out. The reference models are generic: none of the models the benchmarks measure is among them.

    python tools/make_header_dict.py            # writes spec/header-dict-1.txt and the package copy if missing
    python tools/make_header_dict.py --dict 2   # spec/header-dict-2.txt (format 1.2) from dictionary 1

Dictionary 2 is dictionary 1's reference headers in the format 1.2 representation, derived from the
frozen dictionary 1 alone (no TensorFlow, nothing new): every tensor array loses its CRC element and
writes its name as null where the Keras shorthand gives it, as a 1.2 writer does; the codec table part
stays as it is.

Existing files are never overwritten (the dictionary is part of the format).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, "spec", "header-dict-1.txt")
PACKAGE = os.path.join(ROOT, "squeezefmt", "container", "header_dict_1.txt")
SPEC2 = os.path.join(ROOT, "spec", "header-dict-2.txt")
PACKAGE2 = os.path.join(ROOT, "squeezefmt", "container", "header_dict_2.txt")


def split_objects(text: bytes) -> list:
    """The JSON objects a dictionary text is the concatenation of (checked to rebuild it exactly)."""
    decoder, out, pos, s = json.JSONDecoder(), [], 0, text.decode()
    while pos < len(s):
        obj, end = decoder.raw_decode(s, pos)
        out.append((obj, s[pos:end].encode()))
        pos = end
    assert b"".join(raw for _, raw in out) == text
    return out


def dict2_from_dict1(text: bytes) -> bytes:
    """Dictionary 2: dictionary 1's headers as a format 1.2 writer represents them."""
    sys.path.insert(0, ROOT)
    from squeezefmt.container.compact import derived_name_flags

    parts = []
    for obj, raw in split_objects(text):
        if not isinstance(obj.get("tensors"), list):
            parts.append(raw)
            continue
        derived = derived_name_flags([t[0] for t in obj["tensors"]], obj.get("metadata"))
        for t, short in zip(obj["tensors"], derived):
            del t[7]
            if short:
                t[0] = None
        parts.append(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
    return b"".join(parts)


def write_dict2() -> int:
    data = open(SPEC2, "rb").read() if os.path.exists(SPEC2) else dict2_from_dict1(open(SPEC, "rb").read())
    for path in (SPEC2, PACKAGE2):
        if not os.path.exists(path):
            with open(path, "wb") as fh:
                fh.write(data)
    print(f"dictionary 2: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


def reference_models():
    import tensorflow as tf

    L = tf.keras.layers
    tf.keras.utils.set_random_seed(0)
    cnn = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
        L.Conv2D(64, 3, padding="same"), L.BatchNormalization(), L.ReLU(), L.Flatten(), L.Dropout(0.5),
        L.Dense(128, activation="relu"), L.Dense(10, activation="softmax"),
    ])
    inp = tf.keras.Input((784,))
    x = L.Dense(256)(inp)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.Dense(10)(x)
    mlp = tf.keras.Model(inp, x)
    rnn = tf.keras.Sequential([tf.keras.Input((20,)), L.Embedding(100, 8), L.LSTM(8, return_sequences=True),
                               L.GRU(8), L.Dense(1, activation="sigmoid")])
    inp = tf.keras.Input((32, 32, 3))
    a = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    b = L.DepthwiseConv2D(3, padding="same")(a)
    c = L.SeparableConv2D(8, 3, padding="same")(a)
    x = L.Add()([b, c])
    x = L.Concatenate()([x, a])
    x = L.LayerNormalization()(x)
    x = L.AveragePooling2D()(x)
    x = L.GlobalAveragePooling2D()(x)
    res = tf.keras.Model(inp, L.Dense(10)(x))
    return {"rnn": rnn, "res": res, "mlp": mlp, "cnn": cnn}


def codec_table() -> bytes:
    """The descriptions of the built-in codecs with the configs the presets use."""
    from squeezefmt.codecs.bytegroup import ByteGroup
    from squeezefmt.codecs.cluster import Cluster
    from squeezefmt.codecs.epr import EPR
    from squeezefmt.codecs.quantize import Quantize
    from squeezefmt.codecs.sparse import Sparse
    from squeezefmt.codecs.zstd_codec import Zstd

    codecs = [Zstd(level=19), Quantize(bits=8, per_channel=True), EPR(max_rel_rms=0.02), Cluster(bits=5),
              Cluster(bits=8), Sparse(values=ByteGroup(level=19)), Sparse(values=Cluster(bits=5)),
              {"id": "epr", "version": 1, "config": {}}]
    described = [c if isinstance(c, dict) else c.describe() for c in codecs]
    return json.dumps({"codecs": described, "side": [{"step_dims": 3, "transform": "rdft"}]},
                      sort_keys=True, separators=(",", ":")).encode()


def noise_free(header: dict) -> dict:
    for t in header["tensors"]:
        t[5] = [0] * len(t[5])
        t[7] = 0
    header["metadata"].pop("source", None)
    return header


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["--dict", "2"]:
        return write_dict2()
    if os.path.exists(SPEC):
        print(f"{SPEC} exists: the dictionary is frozen; nothing to do")
        data = open(SPEC, "rb").read()
    else:
        sys.path.insert(0, ROOT)
        import squeezefmt
        import squeezefmt.keras as sk
        from squeezefmt.container import header_dict

        header_dict.compress_with_dict = lambda b, level=19: b"\0" * (len(b) + (1 << 20))  # not made yet
        parts = []
        with tempfile.TemporaryDirectory() as tmp:
            for name, model in reference_models().items():
                for kind in ("weights", "model"):
                    h5 = os.path.join(tmp, f"{name}_{kind}.h5")
                    model.save_weights(h5) if kind == "weights" else model.save(h5)
                    with squeezefmt.open(sk.pack(h5)) as f:
                        raw = f.header_json()
                    parts.append(json.dumps(noise_free(json.loads(raw)), sort_keys=True, separators=(",", ":"),
                                            ensure_ascii=False).encode())
        parts.append(codec_table())
        data = b"".join(parts)
        with open(SPEC, "wb") as fh:
            fh.write(data)
    if not os.path.exists(PACKAGE):
        with open(PACKAGE, "wb") as fh:
            fh.write(data)
    print(f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

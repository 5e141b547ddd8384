"""One-off generator of spec/vectors/gamma/vectors.json (frozen: refuses to overwrite).

The bytes come from tensorflow-compression 2.14.1's own ops (run_length_gamma_encode,
PowerLawEntropyModel.compress) and the expected lenient decode results from its
run_length_gamma_decode, so the vectors pin tfc's behaviour, not ours.
"""
import importlib.metadata, json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf, tensorflow_compression as tfc

OUT = sys.argv[1]
if os.path.exists(OUT):
    sys.exit(f"{OUT} exists; vectors are frozen")

def enc(v):
    return tfc.run_length_gamma_encode(tf.constant(np.asarray(v, np.int32))).numpy()

def dec(b, n):
    try:
        return {"values": tfc.run_length_gamma_decode(tf.constant(b), tf.constant([n], tf.int32)).numpy().tolist()}
    except tf.errors.OpError as e:
        msg = e.message.split("}}")[-1].split("[Op:")[0].strip()
        return {"error": msg}

def gamma_bits(x):
    n = x.bit_length()
    return "0" * (n - 1) + "1" + "".join(str((x >> k) & 1) for k in range(n - 1))

def annotate(values):
    """tfc-test-style token list and the bit string in stream order (tokens separated by spaces)."""
    toks, bits, run = [], [], 1
    for v in values:
        if v == 0:
            run += 1
            continue
        toks.append(f"WriteGamma({run}); // " + ("no zeros" if run == 1 else f"{run - 1} zero{'s' if run > 2 else ''}"))
        bits.append(gamma_bits(run))
        toks.append(f"WriteOneBit({int(v > 0)}); // " + ("positive" if v > 0 else "negative"))
        bits.append(str(int(v > 0)))
        m = abs(max(v, -(2**31 - 1)))
        toks.append(f"WriteGamma({m}); // magnitude" + (" (INT32_MIN coded as -INT32_MAX)" if v == -2**31 else ""))
        bits.append(gamma_bits(m))
        run = 1
    if run > 1:
        toks.append(f"WriteGamma({run}); // {run - 1} trailing zero{'s' if run > 2 else ''}")
        bits.append(gamma_bits(run))
    nbits = sum(len(b) for b in bits)
    pad = -nbits % 8
    if pad:
        bits.append("0" * pad + "  (padding)")
    return toks, " ".join(bits)

rng = np.random.default_rng(20261123)
lap = [int(x) for x in np.round(rng.laplace(0, 0.6, 64))]
cases = [
    ("tfc_encode_consistent", [-6, 3, 0, 0], "tfc's EncodeConsistent/DecodeConsistent test: 0b11010001 0b01101101"),
    ("tfc_manual_encode", [0, -3, 1], "tfc's ManualEncodeWithBitcodingLibrary"),
    ("tfc_manual_decode", [-3, 1, 0, 0], "tfc's ManualDecodeWithBitcodingLibrary"),
    ("empty", [], "no values: the empty string"),
    ("one_zero", [0], "only a trailing run"),
    ("three_zeros", [0, 0, 0], ""),
    ("plus_one", [1], ""),
    ("minus_one", [-1], ""),
    ("exactly_one_byte", [0, 0, 0, 0, 0, 0, 0, 1, 0], "8 bits, no padding"),
    ("exactly_two_bytes", [2, -2, 1, 1], "16 bits, no padding"),
    ("int32_max", [2**31 - 1], "61-bit magnitude code"),
    ("minus_int32_max", [-(2**31 - 1)], ""),
    ("int32_min", [-2**31], "INT32_MIN is coded as -INT32_MAX (lossy, as tfc)"),
    ("wide_codes", [2**28, -(2**29 + 5), 0, 2**30, 0, 0], "codes of 57..61 bits cross 64-bit buffer boundaries"),
    ("long_zero_run", [0] * 1000 + [5] + [0] * 300, "runs of 1000 and 300 zeros"),
    ("big_runs_and_values", [0] * 4100 + [-123456] + [0] * 5 + [7], "25-bit run code, 33-bit magnitude code"),
    ("laplacian_64", lap, "rounded Laplacian(0, 0.6) latents, seed 20261123"),
    ("alternating", [(i if i % 2 else -i) for i in range(40)], "like tfc's EncodeAndDecode test"),
]
valid = []
for name, values, note in cases:
    b = enc(values)
    d = dec(b, len(values))["values"]
    toks, bits = annotate(values)
    entry = {"name": name, "note": note, "values": values, "hex": b.hex(), "bits": bits}
    if len(values) <= 12:
        entry["tokens"] = toks
    if d != values:
        entry["decoded"] = d
    valid.append(entry)

x = np.array([[[0, -1], [2, 0], [0, 0]], [[5, 0], [0, 0], [-3, 7]]], np.int32)
units = []
for r in range(4):
    s = np.asarray(tfc.PowerLawEntropyModel(coding_rank=r).compress(x.astype(np.float32)).numpy(), dtype=object)
    units.append({"name": f"units_rank{r}", "shape": list(x.shape), "coding_rank": r,
                  "values": x.reshape(-1).tolist(), "hex": [b.hex() for b in s.reshape(-1)],
                  "strings_shape": list(s.shape)})

def inv(name, data, count, strict_error, note):
    return {"name": name, "hex": data.hex(), "count": count, "strict_error": strict_error,
            "tfc": dec(data, count), "note": note}

invalid = [
    inv("empty_for_3", b"", 3, "truncated", "no bits at all"),
    inv("truncated_int32_max", enc([2**31 - 1])[:-1], 1, "truncated", "last byte of a 61-bit code missing"),
    inv("truncated_tfc_vector", bytes.fromhex("d1"), 4, "truncated", "second byte of d16d missing"),
    inv("run_overruns_count", enc([0, 0, 0]), 2, "overruns", "gamma(4) = 3 zeros into 2 values"),
    inv("count_too_large", enc([0, 0, 0]), 4, "truncated", "3 zeros coded, 4 values expected"),
    inv("zeros_31", bytes([0, 0, 0, 0x80, 0xff]), 1, "longer than 61 bits", "31 zero bits then a 1: bit width 32"),
    inv("all_zero_bytes", bytes(8), 3, "longer than 61 bits", "64 zero bits"),
    inv("trailing_byte", enc([-6, 3, 0, 0]) + b"\xff", 4, "trailing byte", "tfc ignores bytes after the end"),
    inv("nonzero_padding", bytes.fromhex("d1ed"), 4, "padding", "bit 7 of the last byte set; tfc ignores it"),
    inv("extra_value", enc([5, 1]), 1, "trailing byte", "a second value after the last one; tfc ignores it"),
    inv("garbage_for_zero_count", b"garbage", 0, "trailing byte", "count 0: tfc reads nothing at all"),
]
# a corruption the format cannot see: a flipped bit that still decodes to `count` values
good = enc([-6, 3, 0, 0])
undetectable = []
for k in range(16):
    bad = bytearray(good); bad[k // 8] ^= 1 << (k % 8); bad = bytes(bad)
    r = dec(bad, 4)
    if "values" in r and enc(r["values"]) == bad:
        undetectable.append({"name": f"flip_bit_{k}_of_d16d", "hex": bad.hex(), "count": 4,
                             "values": r["values"], "original_values": [-6, 3, 0, 0],
                             "note": "decodes strictly and validly to other values: only the container CRC catches this"})
doc = {
    "description": "Frozen run-length Elias gamma vectors (spec/entropy-gamma.md). Never regenerate.",
    "provenance": f"bytes written by tensorflow-compression {importlib.metadata.version('tensorflow-compression')} (run_length_gamma_encode, "
                  "PowerLawEntropyModel.compress); 'tfc' fields are what its run_length_gamma_decode returns",
    "valid": valid, "units": units, "invalid": invalid, "undetectable": undetectable,
}
def dump(doc):
    """One JSON object per case per line: diffable, and long int lists stay compact."""
    parts = []
    for key, val in doc.items():
        if isinstance(val, list):
            body = ",\n".join("  " + json.dumps(v) for v in val)
            parts.append(f" {json.dumps(key)}: [\n{body}\n ]")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(val)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"
with open(OUT, "w") as f:
    f.write(dump(doc))
assert json.load(open(OUT)) == doc
print(len(valid), len(units), len(invalid), len(undetectable))

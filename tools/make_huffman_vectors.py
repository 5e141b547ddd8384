"""Generator of the frozen Huffman vectors spec/vectors/huffman/{valid,invalid}.json.

It refuses to run when the files exist: the vectors are frozen and tests read them forever.
It documents how each vector was made (both backends had to agree on every byte).
"""
import json, os, sys
import numpy as np
from squeezefmt.entropy import huffman as H
from squeezefmt.entropy import huffman_ref as R

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spec", "vectors", "huffman")
if any(os.path.exists(os.path.join(OUT, f)) for f in ("valid.json", "invalid.json")):
    sys.exit("spec/vectors/huffman already exists; frozen vectors are never regenerated")
EX = [0, 0, 1, 0, 0, 2, 0, 0, 1, 0, 0, 3, 0, 0]

def case(name, symbols, alphabet_size=None, max_code_length=None, dtype="uint8", note=""):
    s = np.asarray(symbols, dtype=np.int64)
    data = H.encode(s, alphabet_size, max_code_length, backend="python")
    assert data == H.encode(s, alphabet_size, max_code_length, backend="c")
    assert np.array_equal(H.decode(data, s.size, dtype, backend="python"), s)
    return {"name": name, "note": note, "alphabet_size": alphabet_size, "max_code_length": max_code_length,
            "dtype": dtype, "count": int(s.size), "mode": H.stream_info(data)["mode"],
            "symbols": [int(x) for x in s], "hex": data.hex()}

rng = np.random.default_rng(20240601)
valid = [
    case("spec_example", EX, 8, note="annotated in spec/entropy-huffman.md section 8"),
    case("spec_example_limited", EX, 8, 2, note="same symbols, max_code_length=2: all lengths 2"),
    case("empty", [], 8, note="RAW width 3, no payload"),
    case("empty_default_alphabet", [], note="alphabet 1: RAW width 0"),
    case("const_small", [3] * 5, 8, note="CONST 3"),
    case("const_leb128", [300] * 5, dtype="uint16", note="CONST, LEB128(300) = ac 02"),
    case("const_zero_alphabet1", [0] * 7, note="alphabet 1, all zero: CONST 0 (ties CONST < RAW)"),
    case("raw_wins", [1, 2, 3, 0, 5], 8, note="a Huffman table would not pay for itself"),
    case("raw_all_distinct_256", rng.permutation(256), 256, note="every byte once: RAW width 8"),
    case("two_symbols", [0, 1] * 3 + [1] * 20, 2, note="alphabet 2, lengths 1,1... RAW wins (1 bit each)"),
]
p = np.exp(-np.abs(np.arange(16) - 7.5) / 2.0); p /= p.sum()
valid.append(case("cluster16_laplace", rng.choice(16, 3000, p=p), 16, note="16 cluster indices, Laplace-like"))
p = np.exp(-np.arange(32) / 3.0); p /= p.sum()
pr = rng.choice(32, 2000, p=p); pr[rng.random(2000) < 0.5] = 0
valid.append(case("pruned32", pr, 32, note="32 clusters, half the weights pruned to index 0"))
fib = [1, 1]
while len(fib) < 18:
    fib.append(fib[-1] + fib[-2])
fs = np.repeat(np.arange(18), fib)
rng.shuffle(fs)
valid.append(case("fibonacci_limit15", fs, 18, note="Fibonacci counts: natural depth 17, limited to 15 (fix-up)"))
valid.append(case("fibonacci_limit5", fs, 18, 5, note="same, max_code_length=5"))
big = rng.choice(rng.choice(65536, 40, replace=False), 600, p=rng.dirichlet(np.ones(40) * 0.5))
valid.append(case("sparse_alphabet65536", big, 65536, dtype="uint16",
                  note="40 symbols spread over 0..65535: zero runs in the table"))
valid.append(case("bytes_skewed", rng.geometric(0.08, 4000).clip(0, 255), 256, note="skewed byte plane"))
with open(os.path.join(OUT, "valid.json"), "w") as f:
    json.dump({"description": "Valid streams: decode(hex, count, dtype) == symbols; our encoder also reproduces hex "
               "from (symbols, alphabet_size, max_code_length) (null = default). Frozen: never regenerate.",
               "vectors": valid}, f, indent=1)

# ---------------------------------------------------------------- invalid streams
def table(lengths, m=None, n=None, pad=True, extra_bits=()):
    w = R.BitWriter()
    R.write_table(w, lengths) if m is None else None
    if m is not None:
        w.write(m - 1, 4)
        w.write_gamma(n if n is not None else len(lengths))
        for ln in lengths:
            if ln == 0:
                w.write_msb(0b110, 3); w.write_gamma(1)
            else:
                w.write_msb(0b111, 3); w.write(ln - 1, 4)
    for b in extra_bits:
        w.bits.append(b)
    return bytes([2]) + w.getvalue()

ex = bytes.fromhex("020e0e09c48803".replace("020e", "0242"))
assert ex == bytes.fromhex("02420e09c48803")
bad = []
def inv(name, data, count, error, dtype="uint8", note=""):
    for be in ("python", "c"):
        try:
            H.decode(data, count, dtype, backend=be)
        except Exception as e:  # noqa
            assert type(e).__name__ == "StreamError" and error in str(e), (name, be, e)
        else:
            raise AssertionError(name)
    bad.append({"name": name, "hex": data.hex(), "count": count, "dtype": dtype, "error": error, "note": note})

def w_bits(bits):
    w = R.BitWriter(); w.bits = list(bits); return w.getvalue()

inv("empty_stream", b"", 0, "empty")
inv("unknown_mode", b"\x03", 0, "unknown mode")
inv("table_truncated", ex[:2], 1, "truncated in")
inv("payload_truncated", ex[:-1], 14, "truncated")
inv("count_too_large", ex, 100, "truncated")
inv("trailing_byte", ex + b"\x00", 14, "trailing bytes")
inv("payload_padding_nonzero", ex[:-1] + b"\x13", 14, "padding")
inv("table_padding_nonzero", ex[:3] + b"\x89" + ex[4:], 14, "padding")
inv("over_subscribed", table([1, 1, 2], m=2) + b"\x00", 1, "over-subscribed")
inv("incomplete", table([1, 2], m=2) + b"\x00", 1, "incomplete")
inv("declared_max_too_big", table([1, 1], m=3) + b"\x00", 1, "declared longest code 3")
inv("length_above_max", bytes([2]) + w_bits([0, 0, 0, 0] + [0, 1, 0] + [1, 0, 0] + [0]) + b"\x00", 1,
    "outside 1..1", note="M=1, N=2, first item prev+1 = 2")
inv("length_zero_by_delta", bytes([2]) + w_bits([0, 0, 0, 0] + [0, 1, 0] + [1, 0, 1]) + b"\x00", 1,
    "outside 1..1", note="M=1, item prev-1 = 0")
inv("table_size_one", bytes([2]) + w_bits([0, 0, 0, 0] + [1] + [0]) + b"\x00", 1, "table size 1")
inv("table_size_65537", bytes([2]) + w_bits([0] * 4 + [0] * 16 + [1] + [0] * 15 + [1]), 1, "table size 65537")
inv("gamma_too_long", bytes([2]) + w_bits([0] * 4 + [0] * 17 + [1]), 1, "gamma number longer")
inv("run_past_end", bytes([2]) + w_bits([0, 0, 0, 0] + [0, 1, 1] + [0] + [1, 1, 0] + [0, 1, 1]), 1,
    "passes the table end", note="M=1, N=3, one code, then a run of 3")
inv("last_entry_unused", table([1, 1, 0], m=1) + b"\x00", 1, "last table entry has no code")
inv("single_coded_symbol", bytes([2]) + w_bits([0, 0, 0, 0] + [0, 1, 0] + [1, 1, 0, 1] + [0]) + b"\x00", 1,
    "fewer than two", note="M=1, N=2: entry 0 unused, entry 1 length 1")
inv("raw_width_17", bytes([0, 17]), 0, "RAW width 17")
inv("raw_truncated", bytes.fromhex("0003d1"), 5, "truncated")
inv("raw_trailing", bytes.fromhex("0003d15000"), 5, "trailing bytes")
inv("raw_padding_nonzero", bytes.fromhex("0003d1d0"), 5, "padding")
inv("raw_missing_width", b"\x00", 0, "without its width byte")
inv("const_truncated", bytes.fromhex("0183"), 1, "truncated in the CONST")
inv("const_not_minimal", bytes.fromhex("018300"), 1, "not minimally encoded")
inv("const_too_large", bytes.fromhex("01808004"), 1, "out of range")
inv("const_four_bytes", bytes.fromhex("0180808001"), 1, "longer than 3 bytes")
inv("const_trailing", bytes.fromhex("010300"), 1, "trailing bytes")
inv("const_does_not_fit_uint8", bytes.fromhex("01ac02"), 1, "does not fit uint8")
inv("raw_width9_into_uint8", bytes.fromhex("0009") + b"\x00\x00", 1, "do not fit uint8")
big_table = table([0] * 299 + [1, 1])
inv("table_does_not_fit_uint8", big_table + b"\x00", 1, "does not fit uint8")
with open(os.path.join(OUT, "invalid.json"), "w") as f:
    json.dump({"description": "Malformed streams: decode(hex, count, dtype) MUST raise StreamError; 'error' is a "
               "substring of both implementations' message. Frozen: never regenerate.", "vectors": bad}, f, indent=1)
print(len(valid), len(bad))
for v in valid:
    print(v["name"], v["mode"], len(v["hex"]) // 2, v["count"])

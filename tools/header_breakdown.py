"""Print where the bytes of .sqz containers go: preamble, header, padding, streams, and the header's parts.

    python tools/header_breakdown.py model.sqz [more.sqz ...] [--json out.json]
    python tools/header_breakdown.py model.h5 --pack [--preset lossless]    # pack first (in memory)

Header parts are measured leave-one-out on the stored (compressed) header
(``squeezefmt.container.breakdown``).
"""
from __future__ import annotations

import argparse
import json
import os

import squeezefmt
from squeezefmt.container.breakdown import file_breakdown, header_breakdown


def report(label: str, data) -> dict:
    with squeezefmt.open(data) as f:
        fb, hb = file_breakdown(f), header_breakdown(f)
        version = "%d.%d" % f.format_version
    print(f"{label}: format {version}, " + ", ".join(f"{k} {v:,}" for k, v in fb.items()))
    for k, v in hb.items():
        print(f"    {k:28s} {v:8,}")
    return {"file": label, "format": version, "layout": fb, "header": hb}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--pack", action="store_true", help="the files are Keras .h5: pack them first")
    ap.add_argument("--preset", default="lossless")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = []
    for path in args.files:
        if args.pack:
            import squeezefmt.keras as sk

            data = sk.pack(path, preset=args.preset)
        else:
            with open(path, "rb") as fh:
                data = fh.read()
        rows.append(report(os.path.basename(path), data))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

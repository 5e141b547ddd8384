#!/usr/bin/env python3
"""Print one line about the test environment: Python, numpy, TensorFlow/Keras/Flower, C speedups built.

The nox sessions (noxfile.py) run it after installing, so each session's log says what it tested.
"""
from __future__ import annotations

import glob
import importlib
import importlib.metadata
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# every C source of the package is one optional extension module (setup.py's _C_MODULES)
C_MODULES = sorted(os.path.relpath(p, ROOT)[:-2].replace(os.sep, ".")
                   for p in glob.glob(os.path.join(ROOT, "squeezefmt", "**", "_*.c"), recursive=True))


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def main() -> int:
    built = []
    for mod in C_MODULES:
        try:
            importlib.import_module(mod)
            built.append(mod.rsplit(".", 1)[1])
        except ImportError:
            pass
    parts = [f"python {sys.version.split()[0]}"]
    for dist in ("numpy", "tensorflow", "keras", "tensorflow-compression", "flwr"):
        v = version(dist)
        if v:
            parts.append(f"{dist} {v}")
    parts.append(f"C speedups {len(built)}/{len(C_MODULES)}: " + (", ".join(built) or "none"))
    print(" | ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

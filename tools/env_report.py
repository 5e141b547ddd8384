#!/usr/bin/env python3
"""Print one line about the test environment: Python, numpy, TensorFlow/Keras/Flower, C speedups built.

The nox sessions (noxfile.py) run it after installing, so each session's log says what it tested.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import sys

C_MODULES = ("squeezefmt.entropy._gammac", "squeezefmt.entropy._huffmanc", "squeezefmt.codecs._bytegroupc")


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
    parts.append("C speedups: " + (", ".join(built) or "none"))
    print(" | ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

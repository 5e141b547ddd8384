"""Add the missing frozen container vectors to spec/vectors (see sqzdev/vectors/core.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sqzdev.vectors.core import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

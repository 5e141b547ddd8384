"""Add the missing epr vectors to spec/vectors/epr (see sqzdev/vectors/epr.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sqzdev.vectors.epr import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

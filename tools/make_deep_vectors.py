"""Add the missing quant/cluster/sparse vectors to spec/vectors (see sqzdev/vectors/deep.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sqzdev.vectors.deep import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

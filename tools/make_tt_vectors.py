"""Add the missing tt vectors to spec/vectors/tt (see sqzdev/vectors/tt.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sqzdev.vectors.tt import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

"""Which offline data sets are installed, and the line that installs each (see sqzdev/datasets.py; installs nothing)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sqzdev.datasets import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

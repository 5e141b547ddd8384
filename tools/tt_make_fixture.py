"""Train the t3f TT fixture model under tests/fixtures/t3f (see sqzdev/t3f_fixture.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sqzdev.t3f_fixture import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

"""Development helpers shared by the scripts in tools/ and the tests (not part of the squeezefmt package).

* :mod:`sqzdev.vectors`: the frozen test vectors of spec/vectors: the cases, forging helpers and writers.
* :mod:`sqzdev.datasets`: offline data sets (MNIST, Fashion-MNIST, sklearn digits), read safely.
* :mod:`sqzdev.harness`: shared test harnesses (the frozen-vector checks, the "no TensorFlow" subprocess).
* :mod:`sqzdev.keras_files`: legacy .h5 model / weights files written the same way under tf.keras 2 or Keras 3.
* :mod:`sqzdev.t3f_fixture`: the t3f Tensor-Train model used by the TT fixtures.
* :mod:`sqzdev.fl_app`: a Flower Message API federation (numpy MLP, ServerApp, ClientApp, simulation run).

Importable from the repository root: tests get it through pytest's ``pythonpath`` option
(pyproject.toml), scripts in tools/ put the repository root on ``sys.path``.
"""
from __future__ import annotations

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTORS = os.path.join(REPO, "spec", "vectors")
EXAMPLES = os.path.join(REPO, "examples")

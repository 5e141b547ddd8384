"""The short version of tools/fl_demo.py: a real Flower server and 2 clients as separate processes on
127.0.0.1, a Keras classifier on scikit-learn's digits, 3 rounds, Flower's numpy serialization vs
squeezefmt lossy deltas (down and up). The full Fashion-MNIST run is ``tools/fl_demo.py``."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("flwr", "tensorflow", "sklearn")),
    reason="needs the flower and keras extras and scikit-learn")]


def test_flower_run_on_loopback(tmp_path):
    configs = "baseline,lossy-delta+up"
    env = dict(os.environ, FLWR_TELEMETRY_ENABLED="0")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "fl_demo.py"), "--quick", "--configs", configs,
         "--out", str(tmp_path), "--timeout", "240"],
        capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "fl_demo.json").read_text())
    rows = {r["config"]: r for r in result["summary"]}
    base, sqz = rows["baseline"], rows[configs.split(",")[1]]
    for row in (base, sqz):
        assert len(row["down_by_round"]) == 3 and len(row["accuracy_by_round"]) == 4
        assert row["final_accuracy"] > 0.8                      # it actually learned
    # Flower's numpy serialization: every fit message carries the whole model (2 clients x 3 rounds)
    model_bytes = result["runs"]["baseline"]["model_bytes"]
    assert base["down_total"] >= 6 * model_bytes
    assert sqz["down_ratio"] > 4 and sqz["up_ratio"] > 5
    assert sqz["accuracy_delta"] > -0.03
    assert sqz["kinds_by_round"][0] == {"full": 2} and sqz["kinds_by_round"][2] == {"delta": 2}
    assert "| baseline |" in proc.stdout

"""Flower's Message API (flwr >= 1.20): squeezefmt payloads in ArrayRecords, and a real simulation run.

The run uses Flower's own simulation runtime (``run_simulation``: a ServerApp with
``flwr.serverapp.strategy.FedAvg`` and ClientApps on virtual SuperNodes) through
sqzdev.fl_app, the same code tools/fl_app_demo.py prints the bytes-per-round table from.
"""
from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest

pytest.importorskip("flwr.serverapp.strategy", reason="needs current Flower (Message API, flwr >= 1.20)")

from flwr.app import Array, ArrayRecord  # noqa: E402

import squeezefmt  # noqa: E402
from squeezefmt.federated import encode_model  # noqa: E402
from squeezefmt.federated.flower_app import (  # noqa: E402
    STYPE, from_arrays, payload_of, payload_record, record_bytes, to_arrays,
)


def test_payload_travels_as_one_array_of_its_bytes():
    data = encode_model([np.arange(12, dtype=np.float32).reshape(3, 4)], preset="lossless")
    record = payload_record(data)
    assert list(record) == ["sqz"] and record["sqz"].stype == STYPE
    assert payload_of(record) == data and record_bytes(record) == len(data)
    arrays = squeezefmt.federated.decode_model(payload_of(record))
    assert np.array_equal(arrays[0], np.arange(12, dtype=np.float32).reshape(3, 4))


def test_numpy_records_are_not_payloads_and_round_trip():
    arrays = {"k": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float16)}
    record = from_arrays(arrays)
    assert payload_of(record) is None and payload_of(None) is None
    back = to_arrays(record)
    assert list(back) == ["k", "b"] and all(np.array_equal(back[k], arrays[k]) and back[k].dtype == arrays[k].dtype
                                            for k in arrays)
    # Flower's numpy Array data is the .npy serialization: that is the baseline we count
    buf = io.BytesIO()
    np.save(buf, arrays["k"], allow_pickle=False)
    assert len(record["k"].data) == len(buf.getvalue())
    assert record_bytes(record) == sum(len(a.data) for a in record.values())
    # an Array with another stype alone in a record is not ours either
    other = ArrayRecord()
    other["x"] = Array(dtype="uint8", shape=(3,), stype="custom", data=b"abc")
    assert payload_of(other) is None


needs_sim = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("ray", "sklearn")),
    reason="needs flwr[simulation] (ray) and scikit-learn (the current session installs them)")


@pytest.mark.slow
@needs_sim
def test_real_simulation_lossless_delta_is_exact_and_smaller(tmp_path):
    """baseline (Flower's numpy) vs lossless-delta both ways: same accuracies every round, fewer bytes."""
    from sqzdev.fl_app import run_config

    base = run_config(None, clients=2, rounds=2, workdir=str(tmp_path))
    sqz = run_config("lossless-delta", uplink="lossless-delta", clients=2, rounds=2, workdir=str(tmp_path))
    assert [r["round"] for r in sqz["rounds"]] == [1, 2]
    for b, s in zip(base["rounds"], sqz["rounds"]):
        assert s["accuracy"] == b["accuracy"]          # the clients trained on the exact model
        assert s["numpy_bytes"] == b["down_bytes"]      # same messages, counted the same way
        assert 0 < s["down_bytes"] < b["down_bytes"]
        assert s["up_numpy_bytes"] == b["up_bytes"] > s["up_bytes"] > 0  # updates came back as payloads
        assert s["down_messages"] == 4 and not s["errors"]
    assert sqz["final_accuracy"] == base["final_accuracy"] > 0.5
    # round 2: every node holds the round-1 model, so it gets deltas / keeps, never a full payload
    assert set(sqz["rounds"][1]["kinds"]) <= {"delta", "keep"}

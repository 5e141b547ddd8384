"""Keras 3 files loaded under tf.keras 2.14 (configs translated by keras/config_compat.py).

Runs in the legacy environment (TensorFlow 2.14, Keras 2); skipped under Keras 3, which
tests/test_keras3_load.py covers. The weights must be the file's, bit for bit; predictions must
match those Keras 3.15 made (stored beside the fixtures) up to float32 rounding, since the two
TensorFlow versions run different kernels.
"""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
if not tf.__version__.startswith("2.") or int(tf.__version__.split(".")[1]) >= 16:
    pytest.skip("tf.keras 2 test (TensorFlow < 2.16); Keras 3 is covered by test_keras3_load.py",
                allow_module_level=True)

import squeezefmt  # noqa: E402
import squeezefmt.keras as sk  # noqa: E402
from squeezefmt.errors import KerasFormatError  # noqa: E402
from squeezefmt.keras.config_compat import to_keras2  # noqa: E402

pytestmark = pytest.mark.tf
FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "keras3")


def io_of(model):
    d = np.load(os.path.join(FIX, f"{model}_io.npz"))
    xs = [d[k] for k in sorted(d.files) if k.startswith("x")]
    return (xs if len(xs) > 1 else xs[0]), d["y"]


@pytest.mark.parametrize("name", ["cnn.keras", "cnn.h5", "third_party.keras", "third_party.h5", "seq.keras"])
def test_keras3_files_load_under_tf_keras_2(name, tmp_path):
    sk.pack(os.path.join(FIX, name), tmp_path / "m.sqz")
    model = sk.load(tmp_path / "m.sqz")
    assert isinstance(model, tf.keras.Model)
    with squeezefmt.open(tmp_path / "m.sqz") as f:
        stored = [layer for layer in f.metadata()["keras"]["layers"] if layer["weights"]]
        targets = [layer for layer in model.layers if layer.weights]
        assert [s["name"] for s in stored] == [t.name for t in targets]
        for s, t in zip(stored, targets):
            values = [v.numpy() for v in t.trainable_weights + t.non_trainable_weights]  # legacy .h5 order
            assert len(values) == len(s["weights"])
            for w, value in zip(s["weights"], values):
                assert value.tobytes() == f.tensor(w["tensor"]).tobytes(), w["tensor"]
    x, y = io_of(name.split(".")[0])
    np.testing.assert_allclose(model.predict(x, verbose=0), y, rtol=1e-5, atol=1e-6)


def test_translation_of_a_nested_functional_call():
    config = json.loads(zipfile.ZipFile(os.path.join(FIX, "third_party.keras")).read("config.json"))
    k2 = to_keras2(config)
    layers = {layer["name"]: layer for layer in k2["config"]["layers"]}
    assert layers["joined"]["inbound_nodes"] == [[["encoder", 1, 0, {}], ["seq_bidi", 0, 0, {}], ["seq_gru", 0, 0, {}]]]
    assert layers["feats"]["config"]["batch_input_shape"] == [None, 6] and "optional" not in layers["feats"]["config"]
    assert layers["head"]["config"]["dtype"] == "float32"
    assert k2["config"]["output_layers"] == [["head", 0, 0]]
    assert "module" not in json.dumps(k2)


def test_keras3_only_option_is_refused_clearly():
    config = json.loads(zipfile.ZipFile(os.path.join(FIX, "cnn.keras")).read("config.json"))
    dense = next(c for c in config["config"]["layers"] if c["class_name"] == "Dense")
    dense["config"]["quantization_config"] = {"mode": "int8"}
    with pytest.raises(KerasFormatError, match="quantization_config"):
        to_keras2(config)


def test_keras2_fixture_round_trips_exactly_under_tf_keras_2(tmp_path):
    """The Keras 2 file the Keras 3 tests load: under the TensorFlow that wrote it, predictions are exact."""
    x, y = io_of("keras2_mixed")
    sk.pack(os.path.join(FIX, "keras2_mixed.h5"), tmp_path / "m.sqz")
    assert np.array_equal(sk.load(tmp_path / "m.sqz").predict(x, verbose=0), y)
    assert np.array_equal(sk.load(tmp_path / "m.sqz", lazy=True).predict(x, verbose=0), y)

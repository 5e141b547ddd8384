"""EPR log-steps are stored as float16 where the trained values are float16-exact, else kept exact
(float32, epr stream layout version 2) with a warning; ``epr_float16_steps`` rounds them as the tutorial."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import squeezefmt
from squeezefmt.keras.transforms.epr import EPRStepsWarning

h5py = pytest.importorskip("h5py")
import squeezefmt.keras as sk  # noqa: E402


def _tutorial_weights_file(path, kernel_step, bias_step):
    """A weights-only .h5 with the tutorial's CompressibleDense variable names (no TensorFlow)."""
    rng = np.random.default_rng(3)
    steps = {"kernel": np.asarray(kernel_step, np.float32), "bias": np.asarray(bias_step, np.float32)}
    with h5py.File(path, "w") as f:
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.14.0"
        f.attrs["layer_names"] = np.array([b"fc"])
        g = f.create_group("fc")
        names = []
        sub = g.create_group("fc")
        for part, shape in (("kernel", (20, 3)), ("bias", (3,))):
            q = np.round(rng.laplace(0, 2, shape))
            sub.create_dataset(f"{part}_latent:0", data=(q * np.exp(steps[part])).astype(np.float32))
            sub.create_dataset(f"{part}_log_step:0", data=steps[part])
            names += [f"fc/{part}_latent:0".encode(), f"fc/{part}_log_step:0".encode()]
        g.attrs["weight_names"] = np.array(names)
    return steps


def _packed(path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = sk.pack(path, **kw)
    return data, [w for w in caught if issubclass(w.category, EPRStepsWarning)]


def test_float16_exact_steps_are_stored_as_float16(tmp_path):
    path = tmp_path / "exact.h5"
    steps = _tutorial_weights_file(path, [-4.0, -3.5, -5.25], -4.5)
    data, warned = _packed(path)
    assert not warned
    with squeezefmt.open(data) as f:
        e = f.entry("fc/fc/kernel_latent:0")
        assert e.codec["id"] == "epr" and e.codec["version"] == 1 and "step_dtype" not in e.side
        assert f.entry("fc/fc/kernel_latent:0").streams[0].length < 2 * 3 + 60  # float16 steps + gamma
        np.testing.assert_array_equal(f.tensor("fc/fc/kernel_log_step:0"), steps["kernel"])


def test_other_steps_stay_exact_and_are_reported(tmp_path):
    path = tmp_path / "inexact.h5"
    steps = _tutorial_weights_file(path, [-4.1, -3.3, -5.2], -4.123)
    with h5py.File(path, "r") as h:
        latent = h["fc/fc/kernel_latent:0"][()]
    data, warned = _packed(path)
    assert len(warned) == 1 and "fc/fc/kernel_latent:0" in str(warned[0].message)
    with squeezefmt.open(data) as f:
        e = f.entry("fc/fc/kernel_latent:0")
        assert e.codec["version"] == 2 and e.side["step_dtype"] == "float32"
        assert e.stats == {"log_steps": "float32: not float16-exact"}
        np.testing.assert_array_equal(f.tensor("fc/fc/kernel_log_step:0"), steps["kernel"])   # exact
        q = np.round(latent / np.exp(steps["kernel"]))
        np.testing.assert_array_equal(f.tensor("fc/fc/kernel_latent:0"), (q * np.exp(steps["kernel"])).astype(np.float32))
    rounded, warned = _packed(path, epr_float16_steps=True)          # the tutorial's rounding, on request
    assert not warned and len(rounded) < len(data)
    with squeezefmt.open(rounded) as f:
        assert f.entry("fc/fc/kernel_latent:0").codec["version"] == 1
        np.testing.assert_array_equal(f.tensor("fc/fc/kernel_log_step:0"),
                                      steps["kernel"].astype(np.float16).astype(np.float32))

"""EPR with Keras and tensorflow-compression: training layers, packing trained models, tfc equality.

The training layers run on tf.keras 2.14 and on Keras 3 (TF 2.16+); tensorflow-compression (TF 2.14
only) is the reference they are compared against where it is installed (the legacy nox session).
"""
from __future__ import annotations

import warnings

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
try:
    import tensorflow_compression as tfc
except ImportError:  # TF 2.16+: tfc's last release is built for TF 2.14 only
    tfc = None

import h5py  # noqa: E402

import squeezefmt  # noqa: E402
import squeezefmt.keras as sk  # noqa: E402
from squeezefmt import errors  # noqa: E402
from squeezefmt.codecs import TensorSpec  # noqa: E402
from squeezefmt.codecs.epr import read_latents, step_shape, latent_shape  # noqa: E402
from squeezefmt.keras import epr as kepr  # noqa: E402
from squeezefmt.rdft import from_rdft, to_rdft  # noqa: E402
from sqzdev.keras_files import save_legacy_h5, save_legacy_weights, tensor_key  # noqa: E402

pytestmark = pytest.mark.tf

needs_tfc = pytest.mark.skipif(tfc is None, reason="tensorflow-compression reference (TF 2.14 only: legacy session)")
# Model files are written in the legacy .h5 layouts under either Keras (sqzdev.keras_files), so the
# packing/loading tests run under tf.keras 2.14 and Keras 3; only the tfc cross-checks need TF 2.14.


def weight_names(layer):
    return [w.name.split("/")[-1].split(":")[0] for w in layer.weights]


def powerlaw_penalty(x, lmbda, alpha=1e-2):
    """tfc's PowerLawEntropyModel.penalty, summed, in float64 numpy."""
    x = np.asarray(x, np.float64)
    return lmbda * np.sum(np.log((np.abs(x) + alpha) / alpha))


def gamma_part(f, name):
    """The gamma-coded part of an epr stream (after the float16, or float32 for layout version 2, log-steps)."""
    e = f.entry(name)
    side = e.side or {}
    n = int(np.prod(step_shape(latent_shape(e.shape, side.get("transform", "none")), side.get("step_dims", 0))))
    return bytes(f.streams(name)[0])[(4 if side.get("step_dtype") == "float32" else 2) * n:]


def tfc_string(latent, log_step):
    """What the tutorial's compress_latent stores for a latent / log-step pair."""
    latent = tf.convert_to_tensor(latent)
    return tfc.PowerLawEntropyModel(latent.shape.rank).compress(latent / tf.exp(log_step)).numpy()


# -- maths against TensorFlow / tfc ------------------------------------------------------------------

@pytest.mark.parametrize("hw", [(1, 1), (3, 3), (5, 5), (3, 4), (2, 5)])
def test_rdft_numpy_matches_tensorflow(rng, hw):
    k = rng.normal(size=(*hw, 3, 4)).astype(np.float32)
    lat_tf = kepr.to_rdft(tf.constant(k)).numpy()
    np.testing.assert_allclose(to_rdft(k), lat_tf, atol=2e-6)
    # any latent (also ones no real kernel has) decodes the same way in both
    lat = rng.normal(size=lat_tf.shape).astype(np.float32)
    np.testing.assert_allclose(from_rdft(lat, hw[1]), kepr.from_rdft(tf.constant(lat), hw).numpy(), atol=2e-6)


def test_regularizer_is_the_powerlaw_formula(rng):
    x = rng.normal(0, 3, (7, 5)).astype(np.float32)
    np.testing.assert_allclose(kepr.PowerLawRegularizer(0.37)(x).numpy(), powerlaw_penalty(x, 0.37), rtol=1e-6)
    np.testing.assert_allclose(kepr.PowerLawRegularizer(2.0, alpha=0.5)(x).numpy(), powerlaw_penalty(x, 2.0, 0.5),
                               rtol=1e-6)


def test_round_st_is_straight_through():
    x = tf.constant([-1.5, -0.5, 0.49, 0.5, 1.5, 2.5, 7.2])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = kepr.round_st(x) * tf.range(7, dtype=tf.float32)
    assert np.array_equal(kepr.round_st(x).numpy(), np.round(x.numpy()))  # half to even, as tf.round
    assert np.array_equal(tape.gradient(y, x).numpy(), np.arange(7, dtype=np.float32))


@needs_tfc
def test_regularizer_is_tfc_penalty(rng):
    x = rng.normal(0, 3, (7, 5)).astype(np.float32)
    reg = kepr.PowerLawRegularizer(0.37)
    want = 0.37 * tfc.PowerLawEntropyModel(coding_rank=2).penalty(x)
    np.testing.assert_allclose(reg(x).numpy(), want.numpy(), rtol=1e-6)
    assert kepr.PowerLawRegularizer.from_config(reg.get_config()).lmbda == 0.37
    assert kepr.penalty_scale(2.0, 4).lmbda == 0.5


@needs_tfc
def test_round_st_matches_tfc():
    x = tf.constant([-1.5, -0.5, 0.49, 0.5, 1.5, 2.5, 7.2])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = kepr.round_st(x), tfc.round_st(x)
    assert np.array_equal(a.numpy(), b.numpy())
    assert np.array_equal(tape.gradient(a, x).numpy(), tape.gradient(b, x).numpy())


# -- a small EPR-trained model -----------------------------------------------------------------------

def make_epr_model(seed=0, lmbda=1e-3, fit=True):
    tf.keras.utils.set_random_seed(seed)
    reg = kepr.PowerLawRegularizer(lmbda)
    model = tf.keras.Sequential([
        tf.keras.Input((12, 12, 1)),
        kepr.EPRConv2D(4, 3, strides=2, padding="same", activation="leaky_relu", regularizer=reg, name="c1"),
        kepr.EPRConv2D(6, (3, 4), padding="valid", per_frequency_steps=False, regularizer=reg, name="c2"),
        tf.keras.layers.Flatten(name="flat"),
        kepr.EPRDense(8, activation="relu", regularizer=reg, name="d1"),
        kepr.EPRDense(3, regularizer=reg, use_bias=False, name="d2"),
    ])
    model.compile(tf.keras.optimizers.Adam(1e-2), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if not fit:
        return model
    rng = np.random.default_rng(seed)
    model.fit(rng.normal(size=(64, 12, 12, 1)).astype(np.float32), rng.integers(0, 3, 64), epochs=2, verbose=0)
    return model


@pytest.fixture(scope="module")
def epr_model():
    model = make_epr_model()
    x = np.random.default_rng(5).normal(size=(16, 12, 12, 1)).astype(np.float32)
    return model, x, model.predict(x, verbose=0)


def test_layers_train_and_add_the_penalty(epr_model):
    """Training ran; the model's losses are the PowerLaw penalties of latent / step (7 terms)."""
    model, x, _ = epr_model
    model(x[:2], training=True)  # Keras 3 collects the penalties while the layers run
    assert len(model.losses) == 7
    want = 0.0
    for name in ("c1", "c2", "d1", "d2"):
        layer = model.get_layer(name)
        for part in ("kernel", "bias"):
            if part == "bias" and not layer.use_bias:
                continue
            latent = getattr(layer, f"{part}_latent").numpy()
            step = np.exp(getattr(layer, f"{part}_log_step").numpy())
            want += powerlaw_penalty(latent / step, 1e-3)
    np.testing.assert_allclose(float(tf.add_n(model.losses)), want, rtol=1e-5)
    # the latents moved away from their initial values: gradients flow through round_st
    assert np.abs(model.get_layer("d1").kernel_log_step.numpy() - kepr.DEFAULT_LOG_STEP) > 0


@needs_tfc
def test_layer_penalty_equals_tfc_penalty(epr_model):
    model, _, _ = epr_model
    d1 = model.get_layer("d1")
    latent = d1.kernel_latent / tf.exp(d1.kernel_log_step)
    want = 1e-3 * tfc.PowerLawEntropyModel(coding_rank=2).penalty(latent)
    np.testing.assert_allclose(float(d1.regularizer(latent)), float(want), rtol=1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, epr_model):
    d = tmp_path_factory.mktemp("epr")
    model, x, ref = epr_model
    save_legacy_h5(model, d / "m.h5")
    save_legacy_weights(model, d / "w.h5")
    return d, model, x, ref


def test_layers_have_tutorial_weights_and_penalty(epr_model):
    model, x, _ = epr_model
    model(x[:2])
    c1, c2, d1, d2 = (model.get_layer(n) for n in ("c1", "c2", "d1", "d2"))
    assert weight_names(c1) == ["kernel_latent", "kernel_log_step", "bias_latent", "bias_log_step"]
    assert tuple(c1.kernel_latent.shape) == (1, 4, 3, 2, 2) and tuple(c1.kernel_log_step.shape) == (3, 2, 2)
    assert tuple(c2.kernel_latent.shape) == (4, 6, 3, 3, 2) and tuple(c2.kernel_log_step.shape) == ()
    assert tuple(c2.kernel.shape) == (3, 4, 4, 6) and d2.bias is None
    assert len(model.losses) == 7  # kernel + bias penalty per layer, d2 has no bias
    # the forward pass uses the quantized weights
    step = np.exp(d1.kernel_log_step.numpy())
    np.testing.assert_allclose(d1.kernel.numpy(), np.round(d1.kernel_latent.numpy() / step) * step, rtol=1e-6)


@needs_tfc
def test_pack_stores_integer_latents_as_tfc_does(trained):
    d, model, _, _ = trained
    data = sk.pack(d / "m.h5", epr_float16_steps=True)   # the tutorial's float16 log-steps
    with squeezefmt.open(data) as f:
        keys = f.keys()
        assert not any("latent" in k or "log_step" in k for k in keys)
        assert all(f.info(k).codec == "epr" for k in keys)
        for lname in ("c1", "c2", "d1", "d2"):
            layer = model.get_layer(lname)
            for part in ("kernel", "bias"):
                name = f"{lname}/{lname}/{part}:0"
                if name not in keys:
                    assert part == "bias" and lname == "d2"
                    continue
                latent, log_step = getattr(layer, f"{part}_latent"), getattr(layer, f"{part}_log_step")
                # the gamma part is tfc's string, byte for byte
                assert gamma_part(f, name) == tfc_string(latent, log_step)
                # the integers are tf.round(latent / exp(log_step)); the steps are float16 of the log-steps
                e = f.entry(name)
                q, s, transform = read_latents(f.streams(name)[0], e.side or {}, TensorSpec(e.dtype, tuple(e.shape)))
                assert np.array_equal(q, tf.round(latent / tf.exp(log_step)).numpy().astype(np.int32))
                assert np.array_equal(s, log_step.numpy().astype(np.float16))
                assert transform == ("rdft" if lname.startswith("c") and part == "kernel" else "none")
                # decoded = the layer's weight with a float16 step
                want = getattr(layer, part).numpy()
                np.testing.assert_allclose(f.tensor(name), want, rtol=0, atol=5e-3 * np.abs(want).max() + 1e-7)
        meta = f.metadata()["keras"]
        assert {layer["class_name"] for layer in meta["layers"]} == {"Conv2D", "Flatten", "Dense"}
        cfg = meta["model_config"]
        assert "EPR" not in cfg and "PowerLaw" not in cfg and "log_step_init" not in cfg
        assert all(not f.info(k).stats for k in keys)  # no per-tensor stats: the header stays small


def test_default_pack_keeps_trained_log_steps_exact(trained):
    """Trained log-steps are not float16-exact: by default they are kept (float32, version 2) and reported."""
    d, model, _, _ = trained
    with pytest.warns(UserWarning, match="not float16-representable"):
        data = sk.pack(d / "m.h5")
    with squeezefmt.open(data) as f:
        layer = model.get_layer("c1")
        kernel = tensor_key(f, "c1", "c1", "kernel")
        e = f.entry(kernel)
        assert e.codec["version"] == 2 and e.side["step_dtype"] == "float32"
        q, s, _ = read_latents(f.streams(kernel)[0], e.side, TensorSpec(e.dtype, tuple(e.shape)))
        assert s.dtype == np.float32 and np.array_equal(s, layer.kernel_log_step.numpy())
        np.testing.assert_allclose(f.tensor(kernel), layer.kernel.numpy(), rtol=0,
                                   atol=1e-5 * np.abs(layer.kernel.numpy()).max())
    copy = make_epr_model(fit=False)                 # (the module's trained model stays untouched)
    copy.set_weights(model.get_weights())
    assert kepr.round_log_steps(copy) > 0            # what tools/epr_train.py does before saving
    copy.save(d / "rounded.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rounded = sk.pack(d / "rounded.h5")
    with squeezefmt.open(rounded) as f:
        assert all(f.entry(k).codec["version"] == 1 for k in f.keys())
    assert len(rounded) < len(data)


@needs_tfc
def test_float32_log_steps_stream_is_tfcs(trained):
    """With the trained (float32) log-steps kept, the gamma part is still tfc's string, byte for byte."""
    d, model, _, _ = trained
    with pytest.warns(UserWarning, match="not float16-representable"):
        data = sk.pack(d / "m.h5")
    with squeezefmt.open(data) as f:
        layer = model.get_layer("c1")
        assert gamma_part(f, tensor_key(f, "c1", "c1", "kernel")) == tfc_string(layer.kernel_latent,
                                                                                 layer.kernel_log_step)


def test_load_gives_plain_layers_with_decoded_weights(trained, tmp_path):
    d, model, x, ref = trained
    sk.pack(d / "m.h5", tmp_path / "m.sqz")
    loaded = sk.load(tmp_path / "m.sqz")
    assert [type(layer).__name__ for layer in loaded.layers] == ["Conv2D", "Conv2D", "Flatten", "Dense", "Dense"]
    out = loaded.predict(x, verbose=0)
    np.testing.assert_allclose(out, ref, atol=1e-2 * np.abs(ref).max())
    # unpack: an ordinary Keras .h5 with plain layer classes
    sk.unpack(tmp_path / "m.sqz", tmp_path / "u.h5")
    with h5py.File(tmp_path / "u.h5") as h:
        cfg = json.loads(h.attrs["model_config"])
    assert [layer["class_name"] for layer in cfg["config"]["layers"]] == ["InputLayer", "Conv2D", "Conv2D", "Flatten",
                                                                          "Dense", "Dense"]
    back = tf.keras.models.load_model(tmp_path / "u.h5", compile=False)
    assert np.array_equal(back.predict(x, verbose=0), out)


def test_save_live_model_and_optimizer_dropped(trained):
    d, model, x, ref = trained
    data = sk.save(model, include_optimizer=True)
    with squeezefmt.open(data) as f:
        assert not any(k.startswith("optimizer/") for k in f.keys())
        assert all(f.info(k).codec == "epr" for k in f.keys())
        assert not f.metadata()["keras"].get("optimizer")
    np.testing.assert_allclose(sk.load(data).predict(x, verbose=0), ref, atol=1e-2 * np.abs(ref).max())


@needs_tfc
def test_weights_only_file_keeps_latent_tensors(trained):
    d, model, x, ref = trained
    data = sk.pack(d / "w.h5")
    with squeezefmt.open(data) as f:
        infos = {k: f.info(k) for k in f.keys()}
        assert infos["c1/c1/kernel_latent:0"].codec == "epr"
        assert infos["c1/c1/kernel_latent:0"].shape == (1, 4, 3, 2, 2)
        steps = f.tensor("c1/c1/kernel_log_step:0")
        assert np.array_equal(steps, model.get_layer("c1").kernel_log_step.numpy())   # kept exact by default
        assert gamma_part(f, "d1/d1/kernel_latent:0") == tfc_string(model.get_layer("d1").kernel_latent,
                                                                  model.get_layer("d1").kernel_log_step)
    fresh = make_epr_model(seed=3, fit=False)
    sk.load_weights(fresh, data)
    np.testing.assert_allclose(fresh.predict(x, verbose=0), ref, atol=1e-2 * np.abs(ref).max())
    # the loaded latents quantize back to exactly the stored integers
    d1 = fresh.get_layer("d1")
    q = tf.round(d1.kernel_latent / tf.exp(d1.kernel_log_step)).numpy()
    q0 = tf.round(model.get_layer("d1").kernel_latent / tf.exp(model.get_layer("d1").kernel_log_step)).numpy()
    assert np.array_equal(q, q0)


def test_nested_epr_model(tmp_path):
    tf.keras.utils.set_random_seed(1)
    inner = tf.keras.Sequential([kepr.EPRDense(5, activation="relu", regularizer=1e-3, name="e1"),
                                 tf.keras.layers.Dense(4, name="p1")], name="inner")
    inp = tf.keras.Input((7,))
    model = tf.keras.Model(inp, kepr.EPRDense(2, name="e2")(inner(inp)))
    model.save(tmp_path / "n.h5")
    x = np.random.default_rng(0).normal(size=(4, 7)).astype(np.float32)
    data = sk.pack(tmp_path / "n.h5")
    with squeezefmt.open(data) as f:
        codec = {key: f.info(tensor_key(f, *key)).codec for key in (("inner", "e1", "kernel"),
                                                                    ("e2", "e2", "kernel"), ("inner", "p1", "kernel"))}
    assert codec["inner", "e1", "kernel"] == codec["e2", "e2", "kernel"] == "epr"
    assert codec["inner", "p1", "kernel"] != "epr"
    loaded = sk.load(data)
    assert type(loaded.get_layer("inner").get_layer("e1")).__name__ == "Dense"
    ref = model.predict(x, verbose=0)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), ref, atol=1e-2 * np.abs(ref).max())


def test_make_compressible(rng):
    tf.keras.utils.set_random_seed(2)
    plain = tf.keras.Sequential([tf.keras.Input((8, 8, 2)), tf.keras.layers.Conv2D(3, 3, activation="relu"),
                                 tf.keras.layers.Flatten(), tf.keras.layers.Dense(4)])
    x = rng.normal(size=(5, 8, 8, 2)).astype(np.float32)
    epr_model = kepr.make_compressible(plain, regularizer=1e-4, log_step_init=-14.0)
    assert [type(layer).__name__ for layer in epr_model.layers] == ["EPRConv2D", "Flatten", "EPRDense"]
    np.testing.assert_allclose(epr_model.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-4)
    epr_model(x)
    assert len(epr_model.losses) == 4


# -- the tutorial's own layer classes (weights-only .h5) ------------------------------------------------

class _TutorialDense(tf.keras.layers.Layer):
    """The tutorial's CompressibleDense, condensed (tf.Variable attributes, tfc.round_st)."""

    def __init__(self, filters, name):
        super().__init__(name=name)
        self.filters = filters

    def build(self, input_shape):
        init = tf.keras.initializers.GlorotUniform(seed=1)((input_shape[-1], self.filters))
        self.kernel_latent = tf.Variable(init, name="kernel_latent")
        self.bias_latent = tf.Variable(tf.random.normal((self.filters,), stddev=0.1, seed=2), name="bias_latent")
        self.kernel_log_step = tf.Variable(-4.1, name="kernel_log_step")
        self.bias_log_step = tf.Variable(-5.3, name="bias_log_step")

    def call(self, inputs):
        def q(latent, log_step):
            step = tf.exp(log_step)
            return tfc.round_st(latent / step) * step
        return tf.nn.leaky_relu(tf.linalg.matvec(q(self.kernel_latent, self.kernel_log_step), inputs,
                                                 transpose_a=True) + q(self.bias_latent, self.bias_log_step))


class _TutorialConv(tf.keras.layers.Layer):
    """The tutorial's CompressibleConv2D, condensed: RDFT latent, per-frequency log-steps."""

    def __init__(self, filters, kernel_size, name):
        super().__init__(name=name)
        self.filters, self.kernel_size = filters, kernel_size

    def build(self, input_shape):
        k = tf.keras.initializers.GlorotUniform(seed=3)((self.kernel_size, self.kernel_size, input_shape[-1],
                                                          self.filters))
        self.kernel_latent = tf.Variable(kepr.to_rdft(k), name="kernel_latent")
        self.bias_latent = tf.Variable(tf.zeros((self.filters,)), name="bias_latent")
        self.kernel_log_step = tf.Variable(tf.fill(self.kernel_latent.shape[2:], -4.), name="kernel_log_step")
        self.bias_log_step = tf.Variable(-4., name="bias_log_step")

    def call(self, inputs):
        step = tf.exp(self.kernel_log_step)
        rdft = tfc.round_st(self.kernel_latent / step) * step
        kernel = kepr.from_rdft(rdft, (self.kernel_size, self.kernel_size))
        return tf.nn.leaky_relu(tf.nn.convolution(inputs, kernel, strides=2, padding="SAME") + self.bias_latent)


def make_tutorial_model():
    model = tf.keras.Sequential([_TutorialConv(3, 5, name="conv_1"), tf.keras.layers.Flatten(),
                                 _TutorialDense(4, name="fc_1")])
    model(tf.zeros((1, 10, 10, 1)))
    return model


@needs_tfc
def test_tutorial_layers_are_recognised(tmp_path):
    model = make_tutorial_model()
    model.save_weights(tmp_path / "tut.h5")
    x = np.random.default_rng(1).normal(size=(3, 10, 10, 1)).astype(np.float32)
    ref = model.predict(x, verbose=0)
    data = sk.pack(tmp_path / "tut.h5")
    with squeezefmt.open(data) as f:
        latents = [k for k in f.keys() if k.endswith("_latent:0")]
        assert len(latents) == 4 and all(f.info(k).codec == "epr" for k in latents)
        for k in latents:
            layer = model.get_layer(k.split("/")[0])
            part = k.rsplit("/", 1)[1].split("_latent")[0]
            assert gamma_part(f, k) == tfc_string(getattr(layer, f"{part}_latent"), getattr(layer, f"{part}_log_step"))
    fresh = make_tutorial_model()
    sk.load_weights(fresh, data)
    np.testing.assert_allclose(fresh.predict(x, verbose=0), ref, atol=1e-2 * np.abs(ref).max())


# -- post-training on a plain model via the CLI ---------------------------------------------------------

def test_cli_post_training_options(tmp_path):
    from click.testing import CliRunner

    from squeezefmt.cli import main

    tf.keras.utils.set_random_seed(4)
    plain = tf.keras.Sequential([tf.keras.Input((6, 6, 1)), tf.keras.layers.Conv2D(8, 3, name="conv"),
                                 tf.keras.layers.BatchNormalization(name="bn"), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(10, name="fc")])
    plain.save(tmp_path / "p.h5")
    runner = CliRunner()
    for opts, preset in ((["--epr-max-rel-rms", "0.05"], "epr-rms0.05"), (["--epr-bits", "3"], "epr-bits3"),
                         (["--preset", "epr"], "epr")):
        out = tmp_path / f"{preset}.sqz"
        r = runner.invoke(main, ["pack", *opts, str(tmp_path / "p.h5"), str(out)])
        assert r.exit_code == 0, r.output
        with squeezefmt.open(out) as f:
            codec = {key: f.info(tensor_key(f, *key)).codec for key in (("fc", "fc", "kernel"),
                                                                        ("conv", "conv", "kernel"), ("bn", "bn", "moving_variance"))}
            assert f.metadata()["packing"]["preset"] == preset
        assert codec["fc", "fc", "kernel"] == "epr" and codec["conv", "conv", "kernel"] == "epr"
        assert codec["bn", "bn", "moving_variance"] != "epr"
        x = np.random.default_rng(0).normal(size=(4, 6, 6, 1)).astype(np.float32)
        ref = plain.predict(x, verbose=0)
        np.testing.assert_allclose(sk.load(out).predict(x, verbose=0), ref, atol=0.5 * np.abs(ref).max())
    r = runner.invoke(main, ["pack", "--epr-bits", "2", "--epr-max-rel-rms", "0.1", str(tmp_path / "p.h5"),
                             str(tmp_path / "bad.sqz")])
    assert r.exit_code == 2 and "cannot be combined" in r.output


def test_bad_epr_weights_raise_keras_format_error(tmp_path):
    from squeezefmt.keras.transforms.epr import rewrite_epr
    from squeezefmt.keras.formats.h5 import read_h5

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((4,)), kepr.EPRDense(3, name="e")])
    model.get_layer("e").kernel_log_step.assign(-40.0)  # latents / exp(-40) overflow int32
    model.save(tmp_path / "b.h5")
    with pytest.raises(errors.KerasFormatError, match="int32"):
        rewrite_epr(read_h5(tmp_path / "b.h5"))


def test_pack_epr_model_without_tensorflow(trained, tmp_path):
    """Packing an EPR-trained .h5 (rewrite + latents) and decoding it need no TensorFlow."""
    from sqzdev.harness import run_without_tensorflow

    d, _, _, _ = trained
    with squeezefmt.open(sk.pack(d / "m.h5")) as f:
        kernel = tensor_key(f, "c1", "c1", "kernel")  # its name follows the Keras that wrote m.h5
    out = run_without_tensorflow(f"""
        import squeezefmt, squeezefmt.keras as sk
        data = sk.pack({str(d / 'm.h5')!r})
        arrays = squeezefmt.load(data)
        assert arrays[{kernel!r}].shape == (3, 3, 1, 4)
        sk.unpack(data, {str(tmp_path / 'u.h5')!r})
        print("ok")
    """)
    assert out.strip() == "ok"


def test_make_compressible_resumes_from_container(trained):
    """Load a packed EPR model, turn it back into EPR layers with the exact stored latents."""
    d, model, x, ref = trained
    data = sk.pack(d / "m.h5")
    plain = sk.load(data)
    back = kepr.make_compressible(plain, regularizer=1e-3, source=data)
    for name in ("c1", "c2", "d1"):
        old, new = model.get_layer(name), back.get_layer(name)
        q_old = tf.round(old.kernel_latent / tf.exp(old.kernel_log_step)).numpy()
        q_new = tf.round(new.kernel_latent / tf.exp(new.kernel_log_step)).numpy()
        assert np.array_equal(q_old, q_new), name
        stored = old.kernel_log_step.numpy()        # not float16-exact: stored exactly (float32)
        assert np.array_equal(new.kernel_log_step.numpy(), np.broadcast_to(stored, new.kernel_log_step.shape))
    np.testing.assert_allclose(back.predict(x, verbose=0), ref, atol=1e-2 * np.abs(ref).max())

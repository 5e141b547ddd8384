"""Tensor-Train Keras layers: TTDense, t3f KerasDense models without t3f, TT-SVD of Dense kernels."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import squeezefmt  # noqa: E402
import squeezefmt.keras as sk  # noqa: E402
from squeezefmt import errors, tt_math  # noqa: E402
from squeezefmt.codecs.tt import read_tt  # noqa: E402
from squeezefmt.keras.compat import is_keras3  # noqa: E402
from squeezefmt.keras.tt_layer import TTDense  # noqa: E402

from conftest import ROOT  # noqa: E402
from sqzdev.harness import run_isolated  # noqa: E402
from sqzdev.keras_files import save_legacy_h5, save_legacy_weights  # noqa: E402

pytestmark = pytest.mark.tf

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "t3f")

def run_without_t3f(code: str) -> str:
    """Run ``code`` in a fresh interpreter in which t3f cannot be imported (TensorFlow can)."""
    return run_isolated(code, block=("t3f",), forbid=("t3f",), timeout=300)


def h5_weights(path) -> dict:
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        root.visititems(lambda n, o: out.__setitem__(n, o[()]) if hasattr(o, "shape") else None)
    return out


# -- the layer ---------------------------------------------------------------------------------------------

def test_ttdense_computes_x_w_plus_b_on_the_cores():
    tf.keras.utils.set_random_seed(1)
    layer = TTDense([7, 4, 7, 4], [5, 5, 5, 5], tt_rank=[1, 2, 3, 4, 1], activation=None, bias_initializer=0.5)
    x = np.random.default_rng(0).normal(size=(6, 784)).astype(np.float32)
    y = layer(x).numpy()
    tt = layer.tt_matrix()
    assert tt.ranks == [1, 2, 3, 4, 1] and [c.shape for c in tt.cores][1] == (2, 4, 5, 3)
    np.testing.assert_allclose(y, tt.rmatmul(x) + 0.5, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, x @ layer.dense_kernel() + 0.5, rtol=1e-4, atol=1e-4)
    # leading dimensions, as Dense accepts them
    x3 = x.reshape(2, 3, 784)
    np.testing.assert_allclose(layer(x3).numpy(), y.reshape(2, 3, 625), rtol=1e-6, atol=1e-6)
    assert layer.compute_output_shape((None, 3, 784)).as_list() == [None, 3, 625]
    with pytest.raises(ValueError):
        TTDense([7, 4, 7, 4], [5, 5, 5, 5])(np.ones((1, 783), np.float32))
    with pytest.raises(ValueError):
        TTDense([2, 2], [2, 2], kernel_initializer="orthogonal")


@pytest.mark.slow
def test_ttdense_init_is_t3fs_and_it_trains():
    tf.keras.utils.set_random_seed(2)
    layer = TTDense([7, 4, 7, 4], [5, 5, 5, 5], tt_rank=4, activation="relu", bias_initializer=1e-3)
    layer.build((None, 784))
    std = tt_math.glorot_core_stddev([7, 4, 7, 4], [5, 5, 5, 5], [1, 4, 4, 4, 1])
    allcores = np.concatenate([c.numpy().ravel() for c in layer.cores])
    assert allcores.std() == pytest.approx(std, rel=0.1)
    assert np.all(layer.bias.numpy() == np.float32(1e-3))
    assert len(layer.trainable_weights) == 5
    # a regression problem whose target is a TT-matrix of rank 2: loss must drop
    rng = np.random.default_rng(0)
    target = TTDense([4, 4], [3, 3], tt_rank=2, use_bias=False)
    x = rng.normal(size=(512, 16)).astype(np.float32)
    y = target(x).numpy()
    model = tf.keras.Sequential([tf.keras.Input((16,)), TTDense([4, 4], [3, 3], tt_rank=2, bias_initializer=0.0)])
    model.compile(tf.keras.optimizers.Adam(0.05), "mse")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=30, batch_size=64, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.05 * before


def test_ttdense_model_saves_and_loads_as_h5_and_sqz(tmp_path):
    tf.keras.utils.set_random_seed(3)
    model = tf.keras.Sequential([
        tf.keras.Input((28, 28)), tf.keras.layers.Flatten(),
        TTDense([7, 4, 7, 4], [5, 5, 5, 5], tt_rank=3, activation="relu", name="tt"),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    x = np.random.default_rng(0).normal(size=(8, 28, 28)).astype(np.float32)
    ref = model.predict(x, verbose=0)
    model.save(tmp_path / "m.h5")
    again = tf.keras.models.load_model(tmp_path / "m.h5")  # registered as squeezefmt>TTDense
    assert np.array_equal(again.predict(x, verbose=0), ref)
    sk.pack(tmp_path / "m.h5", tmp_path / "m.sqz")
    with squeezefmt.open(tmp_path / "m.sqz") as f:
        assert f.info("tt/tt_matrix").codec == "tt"
        assert not any("core_" in k for k in f.keys())
    loaded = sk.load(tmp_path / "m.sqz")
    assert isinstance(loaded.get_layer("tt"), TTDense)
    assert np.array_equal(loaded.predict(x, verbose=0), ref)
    assert np.array_equal(sk.load(sk.save(model)).predict(x, verbose=0), ref)
    sk.unpack(tmp_path / "m.sqz", tmp_path / "back.h5")
    a, b = h5_weights(tmp_path / "m.h5"), h5_weights(tmp_path / "back.h5")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    dense = sk.load(tmp_path / "m.sqz", densify=True)
    assert type(dense.get_layer("tt")).__name__ == "Dense"
    np.testing.assert_allclose(dense.predict(x, verbose=0), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not is_keras3(), reason="a .keras archive with a TTDense: Keras 3 writes it")
def test_ttdense_keras_archive_packs_loads_and_unpacks(tmp_path):
    """A Keras 3 ``.keras`` with a TTDense: cores stored as one ``tt`` tensor, and unpacked back to a
    ``.keras`` that Keras's own load_model reads with the model's predictions (cores at their paths)."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              TTDense([7, 4, 7, 4], [5, 5, 5, 5], tt_rank=3, activation="relu", name="tt"),
                              keras.layers.Dense(10, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(8, 28, 28)).astype(np.float32)
    ref = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    sk.pack(tmp_path / "m.keras", tmp_path / "m.sqz")
    with squeezefmt.open(tmp_path / "m.sqz") as f:
        tt_layer = {layer["name"]: layer for layer in f.metadata()["keras"]["layers"]}["tt"]
        assert [f.info(t).codec for t in f.layer_info("tt").tensors][0] == "tt"
    assert tt_layer["weights"][0]["tt_cores"] == [f"tt/core_{k}" for k in range(4)]
    assert tt_layer["weights"][1]["name"] == "tt/bias"
    assert np.array_equal(sk.load(tmp_path / "m.sqz").predict(x, verbose=0), ref)
    sk.unpack(tmp_path / "m.sqz", tmp_path / "back.keras")
    assert np.array_equal(keras.saving.load_model(tmp_path / "back.keras").predict(x, verbose=0), ref)
    sk.unpack(tmp_path / "m.sqz", tmp_path / "back.weights.h5")
    fresh = keras.models.clone_model(model)
    fresh.load_weights(tmp_path / "back.weights.h5")
    assert np.array_equal(fresh.predict(x, verbose=0), ref)


# -- t3f interop --------------------------------------------------------------------------------------------

def test_frozen_t3f_fixture_packs_and_loads_without_t3f(tmp_path):
    """The committed t3f model: packed and loaded with ``import t3f`` blocked, predictions identical."""
    out = run_without_t3f(f"""
        import json, numpy as np, h5py, squeezefmt, squeezefmt.keras as sk
        from squeezefmt.codecs.tt import read_tt
        h5 = {os.path.join(FIXTURE, 't3f_mlp.h5')!r}
        io = np.load({os.path.join(FIXTURE, 't3f_mlp_io.npz')!r})
        sk.pack(h5, {str(tmp_path / 'f.sqz')!r})
        model = sk.load({str(tmp_path / 'f.sqz')!r})
        x = io["images"].astype(np.float32) / 127.5 - 1.0
        pred = model.predict(x, verbose=0)
        with squeezefmt.open({str(tmp_path / 'f.sqz')!r}) as f:
            tt = read_tt(f, "tt_dense_0/tt_matrix")
            codec = f.info("tt_dense_0/tt_matrix").codec
        with h5py.File(h5) as g:
            orig = [g["model_weights/tt_dense_0/matrix/core_%d:0" % k][()] for k in range(4)]
        print(json.dumps({{
            "equal": bool(np.array_equal(pred, io["predictions"])), "codec": codec,
            "cores_exact": all(np.array_equal(a, b) for a, b in zip(tt.cores, orig)),
            "layers": [type(l).__name__ for l in model.layers],
            "t3f_loaded": any(m.split(".")[0] == "t3f" for m in sys.modules),
        }}))
    """)
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"equal": True, "codec": "tt", "cores_exact": True, "t3f_loaded": False,
                      "layers": ["Flatten", "TTDense", "Dense", "Activation"]}


def test_frozen_t3f_fixture_unpacks_exactly_and_densifies(tmp_path):
    h5 = os.path.join(FIXTURE, "t3f_mlp.h5")
    sk.pack(h5, tmp_path / "f.sqz")
    sk.unpack(tmp_path / "f.sqz", tmp_path / "back.h5")
    a, b = h5_weights(h5), h5_weights(tmp_path / "back.h5")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    with squeezefmt.open(tmp_path / "f.sqz") as f:
        layers = {layer["name"]: layer for layer in f.metadata()["keras"]["layers"]}
        assert layers["tt_dense_0"]["weights"][0]["tt_cores"] == [f"matrix/core_{k}:0" for k in range(4)]
        assert f.layer_names() == ["tt_dense_0", "dense"]
    io = np.load(os.path.join(FIXTURE, "t3f_mlp_io.npz"))
    x = io["images"].astype(np.float32) / 127.5 - 1.0
    dense = sk.load(tmp_path / "f.sqz", densify=True)
    assert [type(layer).__name__ for layer in dense.layers] == ["Flatten", "Dense", "Dense", "Activation"]
    np.testing.assert_allclose(dense.predict(x, verbose=0), io["predictions"], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_t3f_model_made_here_round_trips_without_t3f(tmp_path, monkeypatch):
    """Make a fresh fixture with t3f itself (np.int patched), then pack + load it with t3f blocked."""
    t3f = pytest.importorskip("t3f")
    monkeypatch.setattr(np, "int", int, raising=False)  # t3f 1.2.0 still uses the removed alias
    from sqzdev.t3f_fixture import build_t3f_mlp

    tf.keras.utils.set_random_seed(4)
    model = build_t3f_mlp(tf, t3f)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(4)
    model.fit(rng.normal(size=(128, 28, 28)).astype(np.float32), rng.integers(0, 10, 128), epochs=1, verbose=0)
    model.save(tmp_path / "t3f.h5", include_optimizer=False)
    x = rng.normal(size=(32, 28, 28)).astype(np.float32)
    np.savez(tmp_path / "io.npz", x=x, predictions=model.predict(x, verbose=0))
    out = run_without_t3f(f"""
        import numpy as np, squeezefmt.keras as sk
        sk.pack({str(tmp_path / 't3f.h5')!r}, {str(tmp_path / 't3f.sqz')!r})
        io = np.load({str(tmp_path / 'io.npz')!r})
        pred = sk.load({str(tmp_path / 't3f.sqz')!r}).predict(io["x"], verbose=0)
        assert not any(m.split(".")[0] == "t3f" for m in sys.modules)
        print("equal" if np.array_equal(pred, io["predictions"]) else "DIFFERENT %g" % np.abs(pred - io["predictions"]).max())
    """)
    assert out.strip().splitlines()[-1] == "equal"


# -- TT-SVD of Dense kernels ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dense_mlp(tmp_path_factory):
    """A small trained MLP (hidden kernel 64 x 36), the same model under tf.keras 2 and Keras 3.

    Its start is drawn by numpy (Glorot-uniform kernels, zero biases) and it trains in a fixed order
    (no shuffling), so the trained weights do not depend on either Keras's random streams.
    """
    d = tmp_path_factory.mktemp("ttsvd")
    tf.keras.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(512, 64)).astype(np.float32)
    y = (x[:, :8].sum(1) > 0).astype(np.int64) + 2 * (x[:, 8:16].sum(1) > 0)
    model = tf.keras.Sequential([tf.keras.Input((64,)), tf.keras.layers.Dense(36, activation="relu", name="hidden"),
                                 tf.keras.layers.Dense(4, activation="softmax", name="out")])
    model.set_weights([rng.uniform(-1, 1, w.shape).astype(np.float32) * np.float32(np.sqrt(6 / sum(w.shape)))
                       if w.ndim == 2 else np.zeros(w.shape, np.float32) for w in model.get_weights()])
    model.compile(tf.keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, verbose=0, shuffle=False)
    save_legacy_h5(model, d / "mlp.h5")
    save_legacy_weights(model, d / "mlp_w.h5")
    return d, model, x[:16]


def kernel_of(f, layer: str) -> str:
    """The container tensor holding ``layer``'s kernel (its name follows the Keras that wrote the file)."""
    return f.layer_info(layer).tensors[0]


def test_tt_svd_pack_loads_as_ttdense_or_dense(dense_mlp, tmp_path):
    from click.testing import CliRunner

    from squeezefmt.cli import main

    d, model, x = dense_mlp
    r = CliRunner().invoke(main, ["pack", str(d / "mlp.h5"), str(tmp_path / "t.sqz"), "--tt-rank", "3",
                                  "--tt-layers", "hidden"])
    assert r.exit_code == 0, r.output
    assert "tt hidden: 64x36" in r.output and "ranks [1, 3, 3, 3, 1]" in r.output
    with squeezefmt.open(tmp_path / "t.sqz") as f:
        hidden = kernel_of(f, "hidden")
        assert f.info(hidden).codec == "tt"
        assert f.info(kernel_of(f, "out")).codec != "tt"
        assert f.metadata()["packing"]["tt"]["tensors"] == [hidden]
        tt = read_tt(f, hidden)
        approx = f.tensor(hidden)
    kernel = model.get_layer("hidden").kernel.numpy()
    lo, hi, _ = tt_math.unfolding_bounds(kernel, tt.input_dims, tt.output_dims, tt.ranks)
    err = float(np.linalg.norm(approx - kernel))
    assert lo * (1 - 1e-4) <= err <= hi * (1 + 1e-4)

    kept = sk.load(tmp_path / "t.sqz")
    assert isinstance(kept.get_layer("hidden"), TTDense)
    assert kept.get_layer("hidden").tt_matrix().ranks == [1, 3, 3, 3, 1]
    dense = sk.load(tmp_path / "t.sqz", densify=True)
    assert type(dense.get_layer("hidden")).__name__ == "Dense"
    # both compute the original model with the TT-decoded kernel
    manual = tf.keras.models.clone_model(model)
    manual.set_weights([approx] + model.get_weights()[1:])
    want = manual.predict(x, verbose=0)
    np.testing.assert_allclose(kept.predict(x, verbose=0), want, rtol=1e-4, atol=1e-5)
    assert np.array_equal(dense.predict(x, verbose=0), want)
    # unpack keeps the Dense architecture, kernel as decoded
    sk.unpack(tmp_path / "t.sqz", tmp_path / "u.h5")
    back = tf.keras.models.load_model(tmp_path / "u.h5")
    assert np.array_equal(back.get_layer("hidden").kernel.numpy(), approx)


def test_python_tt_packing_writes_what_the_cli_writes(dense_mlp, tmp_path):
    """pack(tt=TTOptions(...)) and pack_tt give the CLI's container, byte for byte (same metadata)."""
    from click.testing import CliRunner

    from squeezefmt.cli import main

    d, *_ = dense_mlp
    r = CliRunner().invoke(main, ["pack", str(d / "mlp.h5"), str(tmp_path / "c.sqz"), "--tt-rank", "3",
                                  "--tt-layers", "hidden", "--quiet"])
    assert r.exit_code == 0, r.output
    report = []
    sk.pack(d / "mlp.h5", tmp_path / "p.sqz", tt=sk.TTOptions(max_rank=3, layers=["hidden"]), tt_report=report)
    alias, alias_report = sk.pack_tt(d / "mlp.h5", max_rank=3, layers=["hidden"])
    cli = (tmp_path / "c.sqz").read_bytes()
    assert (tmp_path / "p.sqz").read_bytes() == cli
    with squeezefmt.open(alias) as f:
        with squeezefmt.open(cli) as g:
            assert f.metadata()["packing"] == g.metadata()["packing"]
    assert [c.as_dict() for c in report] == [c.as_dict() for c in alias_report] and report[0].layer == "hidden"


def test_tt_tolerance_and_weights_only(dense_mlp, tmp_path):
    from squeezefmt.keras.formats.h5 import read_h5
    from squeezefmt.keras.pack import pack_tt
    from squeezefmt.keras.transforms.tt import tt_svd_codecs

    d, model, x = dense_mlp
    data, report = pack_tt(d / "mlp.h5", tol=0.3, dims=[([4, 4, 4], [3, 4, 3])])
    hidden = [c for c in report if c.layer == "hidden"][0]
    assert hidden.used and hidden.input_dims == [4, 4, 4] and hidden.rel_error <= 0.3
    with squeezefmt.open(data) as f:
        assert f.info(kernel_of(f, "hidden")).stats["rel_rms_err"] <= 0.3 + 1e-6
    # the 36 x 4 output kernel: TT-coded only when smaller
    out = [c for c in report if c.layer == "out"][0]
    assert out.used == (out.params < 36 * 4)
    # weights-only files: classes unknown, so layers are named; load_weights gives the dense kernel
    archive = read_h5(d / "mlp_w.h5")
    assert tt_svd_codecs(archive, max_rank=2)[0] == {}
    codecs, _ = tt_svd_codecs(archive, max_rank=2, layers=["hidden"])
    w = sk.pack(d / "mlp_w.h5", codecs=codecs)
    fresh = tf.keras.models.clone_model(model)
    sk.load_weights(fresh, w)
    with squeezefmt.open(w) as f:
        assert np.array_equal(fresh.get_layer("hidden").kernel.numpy(), f.tensor(kernel_of(f, "hidden")))
    with pytest.raises(errors.KerasFormatError, match="no layer named"):
        tt_svd_codecs(archive, max_rank=2, layers=["nope"])
    with pytest.raises(errors.CodecError):
        tt_svd_codecs(archive)


def test_cli_tt_option_errors(dense_mlp, tmp_path):
    from click.testing import CliRunner

    from squeezefmt.cli import main

    d, *_ = dense_mlp
    r = CliRunner().invoke(main, ["pack", str(d / "mlp.h5"), str(tmp_path / "x.sqz"), "--tt-layers", "hidden"])
    assert r.exit_code == 2 and "need --tt-rank or --tt-tol" in r.output
    r = CliRunner().invoke(main, ["pack", str(d / "mlp.h5"), str(tmp_path / "x.sqz"), "--tt-rank", "2",
                                  "--tt-dims", "7,4:5"])
    assert r.exit_code == 1 and "error" in r.output


@pytest.mark.slow
def test_from_dense_then_fine_tune(dense_mlp):
    d, model, x = dense_mlp
    layer, svd = TTDense.from_dense(model.get_layer("hidden"), max_rank=2)
    assert layer.tt_matrix().ranks == [1, 2, 2, 2, 1] and 0 < svd.rel_error < 1
    np.testing.assert_allclose(layer(x).numpy(),
                               tf.nn.relu(x @ svd.tt.full() + model.get_layer("hidden").bias.numpy()).numpy(),
                               rtol=1e-4, atol=1e-5)
    tuned = tf.keras.Sequential([tf.keras.Input((64,)), layer, model.get_layer("out")])
    tuned.compile(tf.keras.optimizers.Adam(1e-3), "mse")
    before = [c.numpy().copy() for c in layer.cores]
    tuned.fit(x, model.predict(x, verbose=0), epochs=2, verbose=0)
    assert any(not np.array_equal(a, c.numpy()) for a, c in zip(before, layer.cores))

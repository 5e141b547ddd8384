"""``pack --eval``: Keras classifiers trained here on scikit-learn digits, the CLI and its bad-input errors."""
from __future__ import annotations

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from sqzdev import datasets  # noqa: E402 - the dev package (offline data sets)

from click.testing import CliRunner  # noqa: E402

import squeezefmt  # noqa: E402
from squeezefmt.cli import main  # noqa: E402

pytestmark = pytest.mark.slow


def _digits():
    if not datasets.is_available("digits"):
        pytest.skip("scikit-learn digits not installed")
    (x_tr, y_tr), (x_te, y_te) = datasets.load_digits(size=8)
    return ((x_tr.reshape(-1, 64) / 255.0).astype(np.float32), y_tr.astype(np.int64),
            (x_te.reshape(-1, 64) / 255.0).astype(np.float32), y_te.astype(np.int64))


def _train(model, x, y, epochs=40):
    tf.keras.utils.set_random_seed(0)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Paths: a trained digits MLP (full .h5), its weights-only .h5, a regression model, a 2-input model, data."""
    d = tmp_path_factory.mktemp("eval")
    x_tr, y_tr, x_te, y_te = _digits()
    tf.keras.utils.set_random_seed(0)
    L = tf.keras.layers
    inp = tf.keras.Input((64,))
    h = L.Dense(48, activation="relu", name="fc1")(inp)
    mlp = _train(tf.keras.Model(inp, L.Dense(10, activation="softmax", name="out")(h)), x_tr, y_tr)
    a, b = tf.keras.Input((32,)), tf.keras.Input((32,))
    h2 = L.Dense(48, activation="relu")(L.Concatenate()([L.Dense(24)(a), L.Dense(24)(b)]))
    two = tf.keras.Model([a, b], L.Dense(10, activation="softmax")(h2))
    two.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    two.fit([x_tr[:, :32], x_tr[:, 32:]], y_tr, batch_size=128, epochs=40, verbose=0)
    reg = tf.keras.Sequential([tf.keras.Input((64,)), L.Dense(16, activation="relu"), L.Dense(1)])
    paths = {k: str(d / f"{k}.h5") for k in ("mlp", "two", "reg")}
    for key, model in (("mlp", mlp), ("two", two), ("reg", reg)):
        model.save(paths[key])  # HDF5 by the .h5 suffix, in tf.keras 2 and Keras 3 alike
    paths["weights"] = str(d / "mlp.weights.h5")  # the name Keras 3 requires; tf.keras 2 writes HDF5 too
    mlp.save_weights(paths["weights"])
    paths["data"] = str(d / "data.npz")
    np.savez(paths["data"], x=x_te, y=y_te)
    paths["onehot"] = str(d / "onehot.npz")
    np.savez(paths["onehot"], x=x_te, y=np.eye(10, dtype=np.float32)[y_te])
    paths["data2"] = str(d / "data2.npz")
    np.savez(paths["data2"], x0=x_te[:, :32], x1=x_te[:, 32:], y=y_te)
    paths["dir"] = str(d)
    return paths


def _accuracy(model, xs, y):
    return 100.0 * float(np.mean(np.argmax(model.predict(xs, verbose=0), 1) == y))


def test_pack_with_eval_report_matches_the_written_container(files, tmp_path):
    from squeezefmt.keras.eval_pack import pack_with_eval

    out = tmp_path / "m.sqz"
    report = pack_with_eval(files["mlp"], out, files["data"], max_drop=1.0, holdout=0.5)
    v = report.verification
    assert report.result.met and v.drop <= 1.0
    assert v.file_bytes == os.path.getsize(out)
    assert report.ratio > 4  # 64*48 + 48*10 float32 weights at a few bits each
    with np.load(files["data"]) as z:
        x, y = z["x"], z["y"]
    loaded = squeezefmt.keras.load(str(out))
    # The two parts partition the data: the loaded model's accuracy on all of it is their weighted mean.
    expected = (v.metric * report.search_rows + v.holdout_metric * report.holdout_rows) / len(y)
    assert _accuracy(loaded, x, y) == pytest.approx(expected, abs=1e-9)
    assert "held-out" in report.text() and "bits/w" in report.text()


def test_cli_eval_one_hot_and_multi_input(files, tmp_path):
    runner = CliRunner()
    out = tmp_path / "a.sqz"
    r = runner.invoke(main, ["pack", files["mlp"], str(out), "--eval", files["onehot"], "--max-drop", "2", "-q"])
    assert r.exit_code == 0, r.output
    assert out.exists()
    out2 = tmp_path / "b.sqz"
    r = runner.invoke(main, ["pack", files["two"], str(out2), "--eval", files["data2"], "--max-drop", "2",
                             "--holdout", "0.3"])
    assert r.exit_code == 0, r.output
    assert "accuracy on held-out data" in r.output and "bits/w" in r.output
    with squeezefmt.open(str(out2)) as f:
        assert f.metadata()["packing"]["eval"]["max_drop"] == 2.0


def _bad(files, tmp_path, name, **arrays):
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("case, pattern", [
    ("shape", "shape"),
    ("labels", "out of range"),
    ("negative", "out of range"),
    ("empty", "empty"),
    ("no_y", "no 'y'"),
    ("rows", "rows"),
    ("not_npz", "cannot read"),
])
def test_cli_bad_data_is_a_one_line_usage_error(files, tmp_path, case, pattern):
    with np.load(files["data"]) as z:
        x, y = z["x"], z["y"]
    if case == "shape":
        path = _bad(files, tmp_path, case, x=x[:, :63], y=y)
    elif case == "labels":
        path = _bad(files, tmp_path, case, x=x, y=np.where(y == 0, 10, y))
    elif case == "negative":
        path = _bad(files, tmp_path, case, x=x, y=y - 1)
    elif case == "empty":
        path = str(tmp_path / "empty.npz")
        open(path, "wb").close()
    elif case == "no_y":
        path = _bad(files, tmp_path, case, x=x)
    elif case == "rows":
        path = _bad(files, tmp_path, case, x=x[:-1], y=y)
    else:
        path = str(tmp_path / "text.npz")
        with open(path, "w") as f:
            f.write("x,y\n1,2\n")
    out = tmp_path / "never.sqz"
    r = CliRunner().invoke(main, ["pack", files["mlp"], str(out), "--eval", path, "--max-drop", "1"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("squeezefmt: error:") and pattern in lines[0], r.output
    assert not out.exists()


def test_cli_refuses_models_it_cannot_evaluate(files, tmp_path):
    for model, pattern in ((files["reg"], "not a classifier"), (files["weights"], "full model")):
        r = CliRunner().invoke(main, ["pack", model, str(tmp_path / "x.sqz"), "--eval", files["data"]])
        assert r.exit_code == 2 and pattern in r.output and "Traceback" not in r.output, r.output


def test_cli_usage_errors(files, tmp_path):
    out = str(tmp_path / "x.sqz")
    r = CliRunner().invoke(main, ["pack", files["mlp"], out, "--max-drop", "1"])
    assert r.exit_code == 2 and "--eval" in r.output
    r = CliRunner().invoke(main, ["pack", files["mlp"], out, "--eval", files["data"], "--quantize", "4"])
    assert r.exit_code == 2 and "--quantize" in r.output
    r = CliRunner().invoke(main, ["pack", files["mlp"], out, "--confidence", "2"])
    assert r.exit_code == 2 and "--eval" in r.output
    r = CliRunner().invoke(main, ["pack", files["mlp"], out, "--rounding", "rdo"])
    assert r.exit_code == 2 and "--eval" in r.output
    r = CliRunner().invoke(main, ["pack", files["mlp"], out, "--eval", files["data"], "--rounding", "best"])
    assert r.exit_code == 2 and not os.path.exists(out)


def test_gptq_rounding_is_recorded_and_beats_rdo_on_output_error(files, tmp_path):
    """Default --eval rounds with GPTQ on the search data; the file says so, and the kernels it rounded
    lie on their step grid. At equal steps GPTQ's layer-output error is below plain RDO rounding's."""
    from squeezefmt.keras.eval_pack import pack_with_eval, search_backend
    from squeezefmt.keras.evaluate import KerasClassifier
    from squeezefmt.keras.formats import read_archive
    from squeezefmt.search.data import load_eval_data
    from squeezefmt.search.gptq import output_error

    out = tmp_path / "g.sqz"
    report = pack_with_eval(files["mlp"], out, files["data"], max_drop=1.0)
    with squeezefmt.open(str(out)) as f:
        assert f.metadata()["packing"]["eval"]["rounding"] == "gptq"
    clf = KerasClassifier(read_archive(files["mlp"]))
    data = load_eval_data(files["data"])
    gptq, rdo = search_backend(clf, data, "gptq"), search_backend(clf, data, "rdo")
    name = next(n for n in gptq.hessians if "fc1" in n)
    H, W = gptq.hessians[name], clf.exact[name]
    step = 0.5 * float(np.sqrt(np.mean(W.astype(np.float64) ** 2)))
    g, r = gptq.candidate(W, step, name=name), rdo.candidate(W, step, name=name)
    assert output_error(W, g.decoded, H) < output_error(W, r.decoded, H)
    assert report.result.met


def test_input_moments_match_numpy_im2col(tmp_path):
    """H for Dense, Conv2D ('same' and 'valid', strides) and SeparableConv2D pointwise kernels equals X.T @ X
    built by hand from the layer inputs."""
    from squeezefmt.keras.evaluate import KerasClassifier
    from squeezefmt.keras.formats import read_archive
    from squeezefmt.keras.hessians import input_moments
    from squeezefmt.search.data import EvalData

    tf.keras.utils.set_random_seed(1)
    L = tf.keras.layers
    inp = tf.keras.Input((7, 6, 2))
    c1 = L.Conv2D(3, 3, padding="same", activation="relu", name="c1")(inp)
    c2 = L.Conv2D(4, (2, 3), strides=(2, 1), padding="valid", activation="relu", name="c2")(c1)
    s3 = L.SeparableConv2D(5, 3, padding="same", name="s3")(c2)
    out = L.Dense(3, activation="softmax", name="d4")(L.Flatten()(s3))
    model = tf.keras.Model(inp, out)
    path = str(tmp_path / "conv.h5")
    model.save(path)
    x = np.random.default_rng(0).normal(size=(9, 7, 6, 2)).astype(np.float32)
    clf = KerasClassifier(read_archive(path))
    H = input_moments(clf, EvalData([x], np.zeros(9, np.int64)))
    names = {n.split("/")[0]: n for n in H}
    assert set(names) == {"c1", "c2", "s3", "d4"}
    probe = tf.keras.Model(model.inputs, [model.get_layer(k).input for k in ("c1", "c2", "s3", "d4")])
    a1, a2, a3, a4 = [np.asarray(t, np.float64) for t in probe(x)]

    def patches(a, kh, kw, sh, sw, same):
        if same:
            a = np.pad(a, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
        oh, ow = (a.shape[1] - kh) // sh + 1, (a.shape[2] - kw) // sw + 1
        rows = [a[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :].reshape(len(a), -1) for i in range(oh) for j in range(ow)]
        return np.concatenate(rows)

    X1, X2 = patches(a1, 3, 3, 1, 1, True), patches(a2, 2, 3, 2, 1, False)
    dk = model.get_layer("s3").depthwise_kernel.numpy().astype(np.float64)[..., 0]   # (3, 3, 4)
    P = patches(a3, 3, 3, 1, 1, True).reshape(-1, 3, 3, dk.shape[-1])
    X3 = np.einsum("nijc,ijc->nc", P, dk)
    for key, X in (("c1", X1), ("c2", X2), ("s3", X3), ("d4", a4)):
        assert np.allclose(H[names[key]], X.T @ X, rtol=1e-4, atol=1e-3), key


def test_guarded_accuracy_counts_changed_predictions(files):
    from squeezefmt.keras.evaluate import KerasClassifier
    from squeezefmt.keras.formats import read_archive as read_h5
    from squeezefmt.search.data import load_eval_data

    archive = read_h5(files["mlp"])
    scorer = KerasClassifier(archive).scorer(load_eval_data(files["data"]), confidence=2.0)
    exact = dict(archive.arrays)
    assert scorer.guarded_accuracy(exact) == scorer.accuracy(exact) == scorer.base
    assert scorer.changed(exact) == 0 and scorer.kl(exact) == pytest.approx(0.0, abs=1e-9)
    noisy = {k: v + np.random.default_rng(1).normal(0, 0.3 * v.std(), v.shape).astype(v.dtype)
             for k, v in exact.items()}
    changed = scorer.changed(noisy)
    assert changed > 0 and scorer.kl(noisy) > 0
    n = len(scorer.data)
    assert scorer.guarded_accuracy(noisy) == pytest.approx(scorer.accuracy(noisy) - 200.0 * np.sqrt(changed) / n)


def test_cli_budget_not_met_reports_best_and_writes_nothing(files, tmp_path):
    out = tmp_path / "x.sqz"
    r = CliRunner().invoke(main, ["pack", files["mlp"], str(out), "--eval", files["data"], "--max-drop", "-50"])
    assert r.exit_code == 1
    assert "no lossy packing keeps the accuracy drop within -50 points" in r.output
    assert "best found" in r.output and "bits/w" in r.output  # the best result's table is printed
    assert not out.exists()

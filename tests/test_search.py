"""Accuracy-aware search (squeezefmt.search), numpy only: a real classifier on real data, custom metrics.

The classifier is a two-layer numpy MLP trained here on scikit-learn's digits (a few seconds of
full-batch gradient descent), so sensitivities, the allocation and the verification run against a
model whose accuracy really depends on its weights.
"""
from __future__ import annotations

import numpy as np
import pytest

import squeezefmt
from squeezefmt.errors import SqueezeError
from squeezefmt.search import EPRStepBackend, search, verify
from squeezefmt.search import allocate
from squeezefmt.search.sensitivity import TensorTable

from sqzdev import datasets  # noqa: E402 - the dev package (offline data sets)


def _relu(z):
    return np.maximum(z, 0)


def _forward(w, x):
    h = _relu(x @ w["fc1/kernel"] + w["fc1/bias"])
    return h @ w["out/kernel"] + w["out/bias"]


@pytest.fixture(scope="module")
def digits_mlp():
    """(weights, (x_search, y_search), (x_held, y_held)): a 64-48-10 MLP with ~97 % accuracy."""
    if not datasets.is_available("digits"):
        pytest.skip("scikit-learn digits not installed")
    (x_tr, y_tr), (x_te, y_te) = datasets.load_digits(size=8)
    x_tr = x_tr.reshape(len(x_tr), -1) / 255.0
    x_te = x_te.reshape(len(x_te), -1) / 255.0
    rng = np.random.default_rng(0)
    w = {"fc1/kernel": rng.normal(0, 0.2, (64, 48)), "fc1/bias": np.zeros(48),
         "out/kernel": rng.normal(0, 0.2, (48, 10)), "out/bias": np.zeros(10)}
    onehot = np.eye(10)[y_tr]
    for _ in range(150):  # full-batch gradient descent on the cross-entropy
        h_pre = x_tr @ w["fc1/kernel"] + w["fc1/bias"]
        h = _relu(h_pre)
        z = h @ w["out/kernel"] + w["out/bias"]
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(x_tr)
        gh = (g @ w["out/kernel"].T) * (h_pre > 0)
        for name, grad in (("out/kernel", h.T @ g), ("out/bias", g.sum(0)),
                           ("fc1/kernel", x_tr.T @ gh), ("fc1/bias", gh.sum(0))):
            w[name] -= 2.0 * grad
    w = {k: v.astype(np.float32) for k, v in w.items()}
    half = len(x_te) // 2
    return w, (x_te[:half], y_te[:half]), (x_te[half:], y_te[half:])


def _accuracy(x, y):
    return lambda w: 100.0 * float(np.mean(np.argmax(_forward(w, x), 1) == y))


def test_trained_model_is_accurate(digits_mlp):
    w, (x, y), _ = digits_mlp
    assert _accuracy(x, y)(w) > 90.0


def test_search_meets_budget_and_verifies_on_the_decoded_container(digits_mlp):
    w, (x, y), (xh, yh) = digits_mlp
    metric = _accuracy(x, y)
    result = search(w, metric, max_drop=1.0)
    assert result.met
    assert result.drop <= 1.0
    assert set(result.codecs) <= set(w) and result.codecs  # something was quantized
    blob = squeezefmt.save(w, codecs=result.codecs)
    lossless = squeezefmt.save(w)
    assert len(blob) * 3 < len(lossless)  # float32 weights at a few bits each
    check = verify(blob, result.base_metric, metric, holdout=_accuracy(xh, yh), holdout_base=_accuracy(xh, yh)(w))
    assert check.drop == pytest.approx(result.drop)  # the container decodes to what the search scored
    assert check.file_bytes == len(blob)
    assert check.holdout_drop is not None
    for name, choice in result.choices.items():
        assert (choice.step > 0) == (name in result.codecs)
        assert choice.bits_per_weight == pytest.approx(8 * choice.nbytes / w[name].size)


def test_looser_budget_gives_smaller_file(digits_mlp):
    w, (x, y), _ = digits_mlp
    metric = _accuracy(x, y)
    tight = search(w, metric, max_drop=0.0)
    loose = search(w, metric, max_drop=5.0)
    assert tight.met and loose.met
    assert loose.nbytes < tight.nbytes
    assert tight.drop <= 0.0 and loose.drop <= 5.0


def test_family_never_makes_the_file_larger(digits_mlp):
    from squeezefmt.search import StepSearch

    w, (x, y), _ = digits_mlp
    searcher = StepSearch(w, _accuracy(x, y), use_family=False).prepare(2.0)
    lagrangian = searcher.run(2.0)
    searcher.use_family = True
    both = searcher.run(2.0)
    assert lagrangian.met and both.met and both.nbytes <= lagrangian.nbytes and both.drop <= 2.0
    decoded = squeezefmt.load(squeezefmt.save(w, codecs=both.codecs))
    assert both.base_metric - _accuracy(x, y)(decoded) == pytest.approx(both.drop)


def test_custom_metric_and_distortion(digits_mlp):
    """Any callable: mean log-likelihood as the metric, output MSE as the distortion."""
    w, (x, y), _ = digits_mlp
    ref = _forward(w, x)

    def loglik(weights):
        z = _forward(weights, x)
        z = z - z.max(1, keepdims=True)
        return float(np.mean(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))))

    calls = []

    def mse(weights):
        calls.append(1)
        return float(np.mean((_forward(weights, x) - ref) ** 2))

    result = search(w, loglik, distortion=mse, max_drop=0.02)
    assert result.met and calls
    decoded = squeezefmt.load(squeezefmt.save(w, codecs=result.codecs))
    assert loglik(w) - loglik(decoded) <= 0.02 + 1e-9


def test_budget_not_met_reports_best_found(digits_mlp):
    w, (x, y), _ = digits_mlp
    result = search(w, _accuracy(x, y), max_drop=-50.0)  # "gain 50 points": impossible
    assert not result.met
    assert result.codecs  # the best lossy allocation found is still described
    assert result.drop > -50.0
    assert result.history and min(d for _, d in result.history) == pytest.approx(min(
        d for _, d in result.history))
    assert "searched" in result.summary_lines()[-1]


def test_selection_and_bad_metrics(digits_mlp):
    w, (x, y), _ = digits_mlp
    only = search(w, _accuracy(x, y), max_drop=1.0, select=lambda n, a: n == "fc1/kernel")
    assert set(only.codecs) <= {"fc1/kernel"}
    with pytest.raises(SqueezeError, match="no tensor to quantize"):
        search(w, _accuracy(x, y), max_drop=1.0, select=lambda n, a: False)
    with pytest.raises(SqueezeError, match="not a finite number"):
        search(w, lambda arrays: float("nan"), max_drop=1.0)
    with pytest.raises(SqueezeError, match="not a number"):
        search(w, lambda arrays: "high", max_drop=1.0)


def test_backend_candidate_is_what_the_container_decodes(rng):
    a = rng.normal(0, 0.05, (64, 32)).astype(np.float32)
    cand = EPRStepBackend().candidate(a, 0.02)
    blob = squeezefmt.save({"a": a}, codecs={"a": cand.codec})
    np.testing.assert_array_equal(squeezefmt.load(blob)["a"], cand.decoded)
    assert np.max(np.abs(cand.decoded - a)) <= 0.0101
    coarse = EPRStepBackend().candidate(a, 0.08)
    assert coarse.nbytes < cand.nbytes


def _table(name, rates, dists):
    return TensorTable(name, 100, [None] * len(rates), np.array(rates, float), np.array(dists, float),
                       np.zeros(len(rates)))


def test_lagrangian_path_is_ordered_and_bisect_finds_the_boundary():
    tables = [_table("a", [400, 100, 50, 20], [0, 0.1, 0.3, 2.0]),
              _table("b", [800, 200, 60, 30], [0, 0.05, 0.2, np.inf])]
    path = allocate.lagrangian_path(tables)
    rates = [allocate.total_rate(tables, p) for p in path]
    assert rates == sorted(rates) and path[-1] == (0, 0)
    assert all(p[1] != 3 for p in path)  # an unusable candidate is never allocated
    drop = lambda alloc: allocate.modelled_distortion(tables, alloc)  # noqa: E731
    index, drops = allocate.bisect_path(path, drop, 0.3)
    assert drop(path[index]) <= 0.3 and (index == 0 or drop(path[index - 1]) > 0.3)
    assert len(drops) < len(path)
    assert allocate.bisect_path(path, lambda a: 1.0, 0.5)[0] is None
    alloc, d, n = allocate.refine(tables, path[index], drop, 0.3, 10)
    assert allocate.total_rate(tables, alloc) <= rates[index] and (d is None or d <= 0.3) and n <= 10


def test_fine_tensors_get_the_coarsest_shared_step_within_budget(digits_mlp):
    """``fine`` tensors (here the biases, with a scale vector that matters) are quantized last at one
    relative step: the coarsest of FINE_REL_STEPS whose measured drop keeps the budget, never exact
    when a step fits, and the result's codecs reproduce exactly what was measured."""
    from squeezefmt.search import StepSearch
    from squeezefmt.search.core import FINE_REL_STEPS

    w, (xs, ys), _ = digits_mlp
    w = dict(w, **{"fc1/bias": w["fc1/bias"] + np.float32(0.05), "out/bias": w["out/bias"] + np.float32(0.3)})
    metric = _accuracy(xs, ys)
    kernels = lambda n, a: n.endswith("kernel")  # noqa: E731
    biases = lambda n, a: n.endswith("bias")  # noqa: E731
    result = StepSearch(w, metric, select=kernels, fine=biases).prepare(1.0).run(1.0)
    assert result.met
    assert "out/bias" not in result.codecs  # 10 values: no quantized form is smaller than the exact one
    for n in ("fc1/bias",):
        c = result.choices[n]
        rms = float(np.sqrt(np.mean(np.square(w[n], dtype=np.float64))))
        assert any(np.isclose(c.step, float(np.float16(r * rms)), rtol=1e-3) for r in FINE_REL_STEPS)
    blob = squeezefmt.save(w, codecs=result.codecs)
    decoded = squeezefmt.load(blob)
    assert metric(decoded) == pytest.approx(result.metric)
    assert base_minus(metric, w, decoded) <= 1.0
    # a budget nothing fine can meet leaves the fine tensors exact
    tight = StepSearch(w, lambda a: metric(a) - 100.0 * any(a[n] is not w[n] for n in ("fc1/bias", "out/bias")),
                       select=kernels, fine=biases).prepare(1.0).run(1.0)
    assert "fc1/bias" not in tight.codecs and tight.met


def base_minus(metric, exact, decoded):
    return metric(exact) - metric(decoded)


def test_isotonic_fit_pools_violators():
    from squeezefmt.search.allocate import isotonic_increasing

    assert isotonic_increasing([0, 0.2, 0.1, 0.3]) == pytest.approx([0, 0.15, 0.15, 0.3])
    assert isotonic_increasing([3, 2, 1]) == pytest.approx([2, 2, 2])
    rng = np.random.default_rng(0)
    v = rng.normal(size=50)
    f = isotonic_increasing(v)
    assert np.all(np.diff(f) >= -1e-12) and sum(f) == pytest.approx(v.sum())


def test_scan_path_is_not_fooled_by_one_lucky_or_unlucky_point():
    from squeezefmt.search.allocate import bisect_path, scan_path

    # index 0 = smallest file; drops fall as the file grows, with one lucky dip and one unlucky bump
    drops = [0.9, 0.5, 0.3, 0.04, 0.2, 0.12, 0.06, 0.25, 0.03, 0.02, 0.0]
    path = list(range(len(drops)))
    best, seen = scan_path(path, lambda i: drops[i], 0.1)
    assert best == 8    # 0.25 at index 7 pools with its neighbours; the lucky 0.04 at 3 does not pass the fit
    assert bisect_path(path, lambda i: drops[i], 0.1)[0] in (3, 6, 8)   # bisection lands where its probes fall
    # the scan stops after STOP_RUN allocations far over the budget
    calls = []
    scan_path(path, lambda i: calls.append(i) or (1.0 if i < 9 else 0.0), 0.1)
    assert calls == [10, 9, 8, 7, 6]

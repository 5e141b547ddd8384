"""Keras glue for the accuracy-aware search: a classifier built once, scored on weight dicts.

:class:`KerasClassifier` rebuilds the model of a :class:`~squeezefmt.keras.archive.KerasArchive` from its
stored config (never ``load_model``), checks that it is a classifier (one ``(batch, classes)`` output,
``classes >= 2``) and that evaluation data fit it, and hands out :class:`Scorer` objects: given a dict
of tensor name -> array (the archive's tensor names, as the container stores them) a scorer sets the
weights and returns the top-1 accuracy in percent, or the mean KL divergence of the predicted class
distribution from the exact model's. Both come from one forward pass (the last result is cached).
Imports TensorFlow.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import KerasFormatError
from ..search.data import EvalData, EvalDataError
from .archive import KerasArchive
from .compat import numpy_dtype
from .rebuild import build_model, import_tf

#: Rows per forward pass.
BATCH = 1000
#: Default ``confidence`` of :meth:`Scorer.guarded_accuracy` (and ``pack --eval --confidence``): chosen by
#: ``tools/eval_holdout.py`` (budget kept on held-out rows as often as with 1, at larger ratios).
DEFAULT_CONFIDENCE = 0.5


def _ordered_variables(model, archive: KerasArchive) -> list:
    """``[(tensor name, variable)]`` in the order Keras's .h5 loader matches them."""
    stored = [layer for layer in archive.layers if layer["weights"]]
    targets = [layer for layer in model.layers if layer.weights]
    if len(stored) != len(targets):
        raise KerasFormatError(f"the file has weights for {len(stored)} layers, the model has {len(targets)}")
    pairs = []
    for meta, layer in zip(stored, targets):
        variables = layer.trainable_weights + layer.non_trainable_weights
        if len(variables) != len(meta["weights"]):
            raise KerasFormatError(f"layer {layer.name!r} expects {len(variables)} weights, the file has "
                                   f"{len(meta['weights'])}")
        pairs.extend((w["tensor"], v) for w, v in zip(meta["weights"], variables))
    return pairs


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class KerasClassifier:
    """A Keras classifier rebuilt once from an archive; ``scorer(data)`` scores weight dicts on data."""

    def __init__(self, archive: KerasArchive):
        if archive.kind != "model" or not archive.model_config:
            raise KerasFormatError("--eval needs a full model file (with its config), not a weights-only .h5")
        tf = import_tf()
        self.model = build_model(archive.metadata())
        outputs = self.model.outputs
        shape = tuple(outputs[0].shape) if len(outputs) == 1 else None
        if shape is None or len(shape) != 2 or shape[1] is None or shape[1] < 2:
            got = [tuple(o.shape) for o in outputs]
            raise KerasFormatError(f"the model is not a classifier: its output{'s' if len(got) > 1 else ''} "
                                   f"{', '.join(map(str, got))}; --eval needs one (batch, classes) output with classes >= 2")
        self.classes = int(shape[1])
        self.variables = _ordered_variables(self.model, archive)
        self.exact = archive.arrays
        self._call = tf.function(lambda xs: self.model(xs, training=False), reduce_retracing=True)

    def check(self, data: EvalData) -> None:
        """Refuse data whose inputs or labels do not fit the model (one-line :class:`EvalDataError`)."""
        inputs = self.model.inputs
        if len(data.x) != len(inputs):
            raise EvalDataError(f"the model has {len(inputs)} input(s), the data file {len(data.x)} "
                                f"({'x' if len(data.x) == 1 else 'x0, x1, ...'})")
        for i, (a, t) in enumerate(zip(data.x, inputs)):
            want = tuple(t.shape)[1:]
            if a.ndim != len(want) + 1 or any(w is not None and w != d for w, d in zip(want, a.shape[1:])):
                raise EvalDataError(f"input {i} has shape {a.shape[1:]} per sample, the model expects "
                                    f"{tuple('?' if w is None else w for w in want)}")
        top = int(data.y.max())
        if top >= self.classes:
            raise EvalDataError(f"label {top} is out of range: the model has {self.classes} classes (0..{self.classes - 1})")

    def predict(self, arrays: Mapping[str, np.ndarray], data: EvalData) -> np.ndarray:
        """Class probabilities of ``data`` with the weights in ``arrays``."""
        try:
            for name, v in self.variables:  # assign() works in tf.keras 2 and Keras 3 alike
                v.assign(np.asarray(arrays[name], dtype=numpy_dtype(v.dtype)))
        except KeyError as exc:
            raise KerasFormatError(f"no array for weight {exc.args[0]!r}") from None
        out = []
        for start in range(0, len(data), BATCH):
            xs = [a[start:start + BATCH].astype(np.float32) for a in data.x]
            out.append(np.asarray(self._call(xs if len(xs) > 1 else xs[0]), dtype=np.float64))
        p = np.concatenate(out)
        if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):  # logits, not probabilities
            p = _softmax(p)
        return p

    def scorer(self, data: EvalData, confidence: float = DEFAULT_CONFIDENCE) -> "Scorer":
        self.check(data)
        return Scorer(self, data, confidence)


class Scorer:
    """Top-1 accuracy (percent) and KL distortion of weight dicts on one data set."""

    def __init__(self, clf: KerasClassifier, data: EvalData, confidence: float = DEFAULT_CONFIDENCE):
        self.clf, self.data, self.confidence = clf, data, float(confidence)
        self._last = None  # (arrays object, probabilities): metric and distortion share a forward pass
        self.reference = self._probs(clf.exact)
        self.reference_top = np.argmax(self.reference, axis=1)
        self.base = self.accuracy(clf.exact)

    def _probs(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        if self._last is not None and self._last[0] is arrays:
            return self._last[1]
        p = self.clf.predict(arrays, self.data)
        self._last = (arrays, p)
        return p

    def accuracy(self, arrays: Mapping[str, np.ndarray]) -> float:
        """Top-1 accuracy in percent."""
        return 100.0 * float(np.mean(np.argmax(self._probs(arrays), axis=1) == self.data.y))

    def changed(self, arrays: Mapping[str, np.ndarray]) -> int:
        """How many top-1 predictions differ from the exact model's."""
        return int(np.sum(np.argmax(self._probs(arrays), axis=1) != self.reference_top))

    def guarded_accuracy(self, arrays: Mapping[str, np.ndarray]) -> float:
        """Accuracy minus ``confidence`` standard errors of the paired accuracy change, in percent.

        The change in accuracy is ``(gained - lost) / N`` over the ``gained + lost`` predictions that
        differ from the exact model's; its standard error is about ``sqrt(gained + lost) / N``. A budget
        on this guarded metric holds on other data from the same distribution with a margin that
        grows with the number of changed predictions (the exact weights score exactly ``base``).
        """
        return self.accuracy(arrays) - self.confidence * 100.0 * np.sqrt(self.changed(arrays)) / len(self.data)

    def kl(self, arrays: Mapping[str, np.ndarray]) -> float:
        """Mean KL(exact || quantized) of the predicted class distributions, in nats."""
        p, q = self.reference, self._probs(arrays)
        eps = 1e-12
        return float(np.mean(np.sum(p * (np.log(p + eps) - np.log(q + eps)), axis=1)))

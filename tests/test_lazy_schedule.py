"""Layer-major predict of lazy models (squeezefmt/keras/lazy_schedule.py): identical outputs, one decode per call."""
from __future__ import annotations

import gc
import os
import warnings

import numpy as np
import pytest

from sqzdev.harness import randomize_weights

tf = pytest.importorskip("tensorflow")

import squeezefmt.keras as sk  # noqa: E402
from squeezefmt.keras.lazy import lazy_state  # noqa: E402
from squeezefmt.keras.lazy_schedule import configure  # noqa: E402

pytestmark = pytest.mark.tf
L = tf.keras.layers
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


randomize = randomize_weights


def same(a, b) -> bool:
    fa, fb = tf.nest.flatten(a), tf.nest.flatten(b)
    return len(fa) == len(fb) and all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(fa, fb))


def decodes(model) -> int:
    return lazy_state(model).cache.stats()["decodes"]


def check_layer_major(data, x, batch_sizes=(32, 5), **load_kwargs):
    """Layer-major lazy predict == eager predict, bit for bit, each lazy layer decoded once per call."""
    eager = sk.load(data, **load_kwargs)
    lazy = sk.load(data, lazy=True, **load_kwargs)
    n_lazy = len(lazy_state(lazy).layers)
    x_before = [np.array(a, copy=True) for a in tf.nest.flatten(x)]
    for bs in batch_sizes:
        before = decodes(lazy)
        out = lazy.predict(x, batch_size=bs, verbose=0)
        # the batch loop hands TensorFlow slices of these arrays: no kernel may write into them
        assert all(np.array_equal(a, b) for a, b in zip(tf.nest.flatten(x), x_before))
        assert same(out, eager.predict(x, batch_size=bs, verbose=0)), bs
        schedule = configure(lazy)
        assert schedule.last_call["chunks"] == 1, schedule.last_call
        assert decodes(lazy) - before == n_lazy
    return eager, lazy


def mlp(depth=12, width=64, seed=0):
    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential([L.Input((width,))] + [L.Dense(width, activation="tanh") for _ in range(depth)])
    return randomize(model, seed)


def test_sequential_mlp_identical_and_decoded_once_per_call():
    x = np.random.default_rng(1).normal(size=(130, 64)).astype(np.float32)
    _, lazy = check_layer_major(sk.save(mlp()), x)
    assert configure(lazy).last_call["stages"] == 12


def test_functional_dag_with_two_inputs_two_outputs_and_a_shared_layer():
    tf.keras.utils.set_random_seed(2)
    a, b = L.Input((8, 8, 3), name="img"), L.Input((5,), name="vec")
    x = L.ZeroPadding2D(1)(a)
    x = L.Conv2D(6, 3, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    y = L.SeparableConv2D(6, 3, padding="same", activation="relu")(x)
    x = L.Add()([x, y])                                   # a skip connection across a stage
    x = L.GlobalAveragePooling2D()(x)
    shared = L.Dense(6, activation="relu", name="shared")
    v = shared(L.Dense(6)(b))
    w = shared(x)                                         # the same layer in two places
    out1 = L.Dense(3, activation="softmax", name="p")(L.Concatenate()([v, w]))
    out2 = L.Dense(2, name="q")(L.Multiply()([v, w]))
    model = randomize(tf.keras.Model([a, b], [out1, out2]))
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(70, 8, 8, 3)).astype(np.float32), rng.normal(size=(70, 5)).astype(np.float32)]
    eager, lazy = check_layer_major(sk.save(model), xs)
    # a dict of inputs by name, and float64 inputs (Keras casts them to float32)
    as_dict = {"img": xs[0].astype(np.float64), "vec": xs[1]}
    assert same(lazy.predict(as_dict, batch_size=16, verbose=0), eager.predict(as_dict, batch_size=16, verbose=0))
    assert same(lazy(xs), eager(xs))


def test_every_weighted_layer_kind_and_nested_model():
    tf.keras.utils.set_random_seed(0)
    inner = tf.keras.Sequential([L.Dense(8, activation="relu"), L.BatchNormalization(), L.Dense(4)], name="inner")
    inp = L.Input((10, 10, 3))
    x = L.Conv2D(8, 3, padding="same")(inp)
    x = L.BatchNormalization()(x)
    x = L.DepthwiseConv2D(3)(x)
    x = L.SeparableConv2D(6, 3, activation="relu")(x)
    x = L.Reshape((36, 6))(x)
    x = L.LSTM(5, return_sequences=True)(x)
    x = L.GRU(8)(x)
    x = L.LayerNormalization()(x)
    out = inner(x)
    model = randomize(tf.keras.Model(inp, out))
    xs = np.random.default_rng(1).normal(size=(40, 10, 10, 3)).astype(np.float32)
    check_layer_major(sk.save(model), xs, batch_sizes=(16,))

    tf.keras.utils.set_random_seed(1)
    emb = tf.keras.Sequential([L.Input((7,), dtype="int32"), L.Embedding(50, 6), L.Flatten(),
                               sk.TTDense(input_dims=[6, 7], output_dims=[4, 4], tt_rank=3, activation="relu"),
                               L.Dense(3)])
    emb = randomize(emb)
    ids = np.random.default_rng(2).integers(0, 50, size=(33, 7))          # int64 rows into an int32 input
    check_layer_major(sk.save(emb), ids, batch_sizes=(8,))


def test_cnn_examples_identical_to_eager_issue_13_item_10(tmp_path):
    """Regression: lazy predict of a Conv2D + BN CNN used to differ from eager predict (Grappler fusions)."""
    x = np.random.default_rng(4).random((96, 28, 28, 1)).astype(np.float32)
    for name in ("mnist_cnn.h5", "fashion_cnn.h5"):
        sk.pack(os.path.join(EXAMPLES, name), tmp_path / "m.sqz")
        data = (tmp_path / "m.sqz").read_bytes()
        check_layer_major(data, x)


def test_cnn_activation_estimate_from_its_layer_shapes(tmp_path):
    """mnist_cnn under the default budget: stage 2 (sepconv2 -> bn2 -> relu2 -> pool2) bounds the chunk.

    Per chunk row it holds conv1's output 28x28x32 and its own 14x14x64; per slice row sepconv2's
    input, depthwise result (both 28x28x32) and output 28x28x64 (lazy_memory.py), float32."""
    sk.pack(os.path.join(EXAMPLES, "mnist_cnn.h5"), tmp_path / "m.sqz")
    data = (tmp_path / "m.sqz").read_bytes()
    eager, lazy = sk.load(data), sk.load(data, lazy=True)
    x = np.random.default_rng(9).random((130, 28, 28, 1)).astype(np.float32)
    assert same(lazy.predict(x, verbose=0), eager.predict(x, verbose=0))
    chunk_row, slice_row = 4 * (28 * 28 * 32 + 14 * 14 * 64), 4 * (2 * 28 * 28 * 32 + 28 * 28 * 64)
    batches = (32 * 2**20 - 32 * slice_row) // (32 * chunk_row)
    call = configure(lazy).last_call
    assert batches == 4 and call["chunk_rows"] == 128 and call["chunks"] == 2
    assert call["activation_bytes"] == 128 * chunk_row + 32 * slice_row


def test_chunks_bound_activations_and_outputs_stay_identical():
    model = mlp(depth=6, width=64)
    data = sk.save(model)
    x = np.random.default_rng(5).normal(size=(100, 64)).astype(np.float32)
    eager, lazy = sk.load(data), sk.load(data, lazy=True)
    # per chunk row: a stage's input and output (256 bytes each); per slice row: the Dense step's input
    # and output (lazy_memory.py): 16 rows in slices of 8 hold 16 * 512 + 8 * 512 bytes
    schedule = configure(lazy, activation_bytes=16 * 512 + 8 * 512 + 511)
    before = decodes(lazy)
    out = lazy.predict(x, batch_size=8, verbose=0)
    assert same(out, eager.predict(x, batch_size=8, verbose=0))
    assert schedule.last_call["chunk_rows"] == 16 and schedule.last_call["chunks"] == 7
    assert schedule.last_call["activation_bytes"] == 16 * 512 + 8 * 512
    assert decodes(lazy) - before == 6 * 7


@pytest.mark.parametrize("overlap", [True, False])
def test_at_most_two_stages_decoded_at_once(overlap):
    widths = [32, 256, 32, 256, 32, 64]
    tf.keras.utils.set_random_seed(6)
    model = randomize(tf.keras.Sequential([L.Input((16,))] + [L.Dense(w, activation="relu") for w in widths]))
    data = sk.save(model)
    lazy = sk.load(data, lazy=True)
    configure(lazy, overlap=overlap)
    cache = lazy_state(lazy).cache
    cache.reset_peak()
    x = np.random.default_rng(7).normal(size=(50, 16)).astype(np.float32)
    assert same(lazy.predict(x, verbose=0), sk.load(data).predict(x, verbose=0))
    gc.collect()
    sizes = sorted((sum(w.nbytes for w in layer.get_weights()) for layer in model.layers), reverse=True)
    stats = cache.stats()
    assert stats["live_bytes"] == 0
    assert stats["peak_live_bytes"] <= (sizes[0] + sizes[1] if overlap else sizes[0]), stats


def test_stateful_rnn_falls_back_with_one_warning():
    tf.keras.utils.set_random_seed(8)
    model = randomize(tf.keras.Sequential([L.Input(batch_shape=(4, 6, 3)), L.LSTM(5, stateful=True), L.Dense(2)]))
    data = sk.save(model)
    lazy = sk.load(data, lazy=True)
    x = np.random.default_rng(9).normal(size=(8, 6, 3)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="stateful"):
        first = lazy.predict(x, batch_size=4, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lazy.predict(x, batch_size=4, verbose=0)  # said once
    assert first.shape == (8, 2)
    assert decodes(lazy) == 2 * 2 * 2  # per-batch path: both layers, every batch, both calls


def test_disabled_schedule_uses_the_per_batch_path():
    data = sk.save(mlp(depth=3, width=16))
    lazy = sk.load(data, lazy=True)
    configure(lazy, enabled=False)
    x = np.random.default_rng(10).normal(size=(12, 16)).astype(np.float32)
    lazy.predict(x, batch_size=4, verbose=0)
    assert decodes(lazy) == 3 * 3
    with pytest.raises(ValueError, match="activation_bytes"):
        configure(lazy, activation_bytes=0)


def test_flat_call_gives_what_the_public_call_gives():
    """A stage's concrete function called through _FlatCall (TensorFlow's flat entry, or the public call
    where a TensorFlow has none) returns what ConcreteFunction.__call__ returns, captures included."""
    from squeezefmt.keras.lazy_schedule import _FlatCall

    scale = tf.Variable(2.0)
    spec = [[tf.TensorSpec((None, 3), tf.float32)], [tf.TensorSpec((3, 2), tf.float32), tf.TensorSpec((2,), tf.float32)]]
    concrete = tf.function(lambda ins, w: [tf.matmul(ins[0], w[0]) * scale + w[1]],
                           input_signature=spec, autograph=False).get_concrete_function()

    class PublicOnly:  # a ConcreteFunction without _call_flat
        captured_inputs = concrete.captured_inputs

        def __call__(self, *args):
            return concrete(*args)

    rng = np.random.default_rng(0)
    x, w, b = (tf.constant(rng.standard_normal(s).astype(np.float32)) for s in ((4, 3), (3, 2), (2,)))
    want = concrete([x], [w, b])
    for call in (_FlatCall(concrete), _FlatCall(PublicOnly())):
        got = call([x], [w, b])
        assert same(got, want)
    assert np.allclose(want[0].numpy(), (x.numpy() @ w.numpy()) * 2.0 + b.numpy(), atol=1e-6)
    assert _FlatCall(PublicOnly())._flat is None and _FlatCall(concrete)._flat is not None

"""Layer-level reader API (f.layer, iteration, nbytes, release) and the LRU decode cache; numpy only."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import squeezefmt
from squeezefmt import errors
from squeezefmt.container.cache import LayerCache, aligned
from squeezefmt.container.layers import group_layers


@pytest.fixture(scope="module")
def plain():
    rng = np.random.default_rng(0)
    tensors = {
        "conv/kernel": rng.normal(size=(3, 3, 4, 8)).astype(np.float32),
        "conv/bias": rng.normal(size=8).astype(np.float32),
        "dense/kernel": rng.normal(size=(64, 32)).astype(np.float32),
        "dense/bias": np.zeros(32, np.float32),
        "step": np.array(7, np.int64),
    }
    return tensors, squeezefmt.save(tensors)


def keras_container(arrays, layers):
    return squeezefmt.save(arrays, _extra_metadata={"keras": {"layers": layers}})  # as keras.pack writes it


def test_plain_grouping_order_and_sizes(plain):
    tensors, data = plain
    with squeezefmt.open(data) as f:
        assert f.layer_names() == ["conv", "dense", "step"]
        assert list(f.layer("dense")) == ["dense/kernel", "dense/bias"]
        assert f.nbytes("dense") == f.layer_nbytes("dense") == 64 * 32 * 4 + 32 * 4
        assert f.nbytes("dense/kernel") == 64 * 32 * 4  # a tensor name still means the tensor
        info = f.layer_info("conv")
        assert info.class_name is None and info.tensors == ("conv/kernel", "conv/bias")
        assert info.stored_bytes == sum(f.entry(t).stored_bytes for t in info.tensors)
        seen = []
        for name, weights in f.iter_layers():
            seen.append(name)
            for t, a in weights.items():
                assert np.array_equal(a, tensors[t])
        assert seen == f.layer_names()
        with pytest.raises(KeyError, match="no layer named"):
            f.layer("nope")


def test_keras_grouping_follows_the_model_order():
    rng = np.random.default_rng(1)
    arrays = {
        "b/b/kernel:0": rng.normal(size=(4, 4)).astype(np.float32),
        "a/a/gamma:0": np.ones(4, np.float32),
        "a/a/moving_mean:0": np.zeros(4, np.float32),
        "optimizer/iter": np.array(3, np.int64),
    }
    layers = [
        {"name": "inp", "class_name": "InputLayer", "weights": []},
        {"name": "b", "class_name": "Dense", "weights": [{"name": "b/kernel:0", "tensor": "b/b/kernel:0"}]},
        {"name": "a", "class_name": "BatchNormalization", "weights": [
            {"name": "a/gamma:0", "tensor": "a/a/gamma:0"}, {"name": "a/moving_mean:0", "tensor": "a/a/moving_mean:0"}]},
    ]
    with squeezefmt.open(keras_container(arrays, layers)) as f:
        assert f.layer_names() == ["b", "a", "optimizer"]
        info = f.layer_info("a")
        assert info.class_name == "BatchNormalization"
        assert info.weight_names == ("a/gamma:0", "a/moving_mean:0")
        assert list(f.layer("a")) == ["a/a/gamma:0", "a/a/moving_mean:0"]


@pytest.mark.parametrize("layers, message", [
    ("nope", "must be a list"),
    ([{"weights": []}], "string 'name'"),
    ([{"name": "x", "weights": [{"name": "x/k"}]}], "string 'tensor'"),
    ([{"name": "x", "weights": [{"name": "k", "tensor": "missing"}]}], "does not hold"),
    ([{"name": "x", "weights": [{"name": "k", "tensor": "t"}]},
      {"name": "y", "weights": [{"name": "k", "tensor": "t"}]}], "two layers"),
    ([{"name": "x", "weights": [{"name": "k", "tensor": "t"}]},
      {"name": "x", "weights": [{"name": "k2", "tensor": "u"}]}], "appears twice"),
])
def test_malformed_keras_metadata_is_a_header_error(layers, message):
    data = keras_container({"t": np.zeros(2, np.float32), "u": np.ones(2, np.float32)}, layers)
    with squeezefmt.open(data) as f:
        with pytest.raises(errors.HeaderError, match=message):
            f.layer_names()


def test_a_layer_decode_reads_only_its_streams(plain, counting_file):
    tensors, _ = plain  # format 1.1 (1.2, for files this small, checks one CRC over all streams once)
    src = counting_file(squeezefmt.save(tensors, format_version=(1, 1)))
    with squeezefmt.open(src) as f:
        allowed = {(s.offset, s.offset + s.length) for t in f.layer_info("dense").tensors for s in f.entry(t).streams}
        src.ranges.clear()
        f.layer("dense")
    assert src.ranges and set(src.ranges) <= allowed


def test_release_on_a_memory_mapped_path_keeps_data_readable(plain, tmp_path):
    tensors, data = plain
    path = tmp_path / "p.sqz"
    path.write_bytes(data)
    with squeezefmt.open(path) as f:
        before = f.tensor("dense/kernel")
        f.release("dense")          # a layer
        f.release("conv/kernel")    # a tensor
        assert np.array_equal(f.tensor("dense/kernel"), before)
    with squeezefmt.open(data) as f:
        f.release("dense")          # bytes: nothing to do, no error


def test_cache_without_budget_keeps_nothing_and_tracks_live_bytes(plain):
    tensors, data = plain
    with squeezefmt.open(data) as f:
        cache = LayerCache(f)
        w = cache.get("dense")
        assert [a.shape for a in w] == [(64, 32), (32,)]
        assert np.array_equal(w[0], tensors["dense/kernel"])
        size = f.nbytes("dense")
        assert cache.stats()["live_bytes"] == size
        del w
        gc.collect()
        assert cache.stats()["live_bytes"] == 0 and cache.stats()["peak_live_bytes"] == size
        cache.get("dense")
        assert cache.stats()["decodes"] == 2 and cache.stats()["hits"] == 0 and cache.cached() == []


def test_cache_lru_policy(plain):
    _, data = plain
    with squeezefmt.open(data) as f:
        conv, dense = f.nbytes("conv"), f.nbytes("dense")
        decoded = []
        cache = LayerCache(f, max_bytes=conv + dense, on_decode=lambda k, n: decoded.append((k, n)))
        cache.get("conv")
        cache.get("dense")
        cache.get("conv")                      # hit, conv becomes most recent
        assert cache.stats()["hits"] == 1 and cache.cached() == ["dense", "conv"]
        cache.get("step")                      # over budget: evict the least recently used (dense)
        assert cache.cached() == ["conv", "step"]
        assert cache.stats()["cached_bytes"] == conv + f.nbytes("step")
        assert decoded == [("conv", conv), ("dense", dense), ("step", 8)]
        small = LayerCache(f, max_bytes=dense - 1)  # a layer larger than the budget is never kept
        small.get("dense")
        assert small.cached() == []
        cache.clear()
        assert cache.cached() == [] and cache.stats()["cached_bytes"] == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_cache_budget_must_be_a_non_negative_int(plain, bad):
    with squeezefmt.open(plain[1]) as f:
        with pytest.raises(ValueError, match="max_bytes"):
            LayerCache(f, max_bytes=bad)


def test_cache_with_a_fetch_function_for_derived_keys(plain):
    tensors, data = plain
    with squeezefmt.open(data) as f:
        cache = LayerCache(f, fetch=lambda key: f.tensor(key.split("#")[0]) * 2)
        (a,) = cache.get_tensors("k", ["dense/kernel#twice"])
        assert np.array_equal(a, tensors["dense/kernel"] * 2)


def test_aligned_arrays():
    a = np.arange(10, dtype=np.float32)[1:]
    b = aligned(a)
    assert b.ctypes.data % 64 == 0 and np.array_equal(a, b)
    assert aligned(b) is b


def test_grouping_of_an_empty_container():
    assert group_layers({}, {}) == {}


def test_reading_a_closed_container_is_a_clear_error(plain):
    f = squeezefmt.open(plain[1])
    f.close()
    with pytest.raises(errors.SqueezeError, match="closed"):
        f.layer("dense")
    f.release("dense")  # nothing to release: no error

"""Building many graphs at once: build_batch, the vectorised ctc builder, from_padded."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lattice
from lattice import registry

_ARRAYS = ("num_states", "num_arcs", "labels", "tokens", "start", "final", "src", "dst",
           "weight", "in_ptr", "in_arc", "out_ptr", "out_arc", "band_arc", "band_slot")


def assert_same_batch(a, b):
    for name in _ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        if y is None:
            assert x is None, name
            continue
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
        assert not x.flags.writeable, name
    assert (a.band, a.max_states, a.max_arcs, a.max_in_degree, a.max_label) == (
        b.band, b.max_states, b.max_arcs, b.max_in_degree, b.max_label)
    assert len(a) == len(b)
    assert a.graphs == b.graphs


targets = st.lists(st.lists(st.integers(1, 4), max_size=7), max_size=6)


@settings(max_examples=150, deadline=None)
@given(targets=targets, between=st.sampled_from(["optional", "required", "none"]),
       blank=st.sampled_from([0, 5]))
def test_ctc_build_batch_equals_graph_by_graph(targets, between, blank):
    fast = lattice.build_batch("ctc", targets, blank=blank, between=between)
    slow = lattice.batch([lattice.build("ctc", t, blank=blank, between=between)
                          for t in targets])
    assert_same_batch(fast, slow)


def test_ctc_build_batch_scores_like_the_graphs():
    rng = np.random.default_rng(0)
    tg = [rng.integers(1, 6, size=n) for n in (0, 1, 4, 9)]
    e = np.log(rng.dirichlet(np.ones(6), size=(4, 20)))
    fast = lattice.forward_backward(e, lattice.build_batch("ctc", tg))
    slow = lattice.forward_backward(e, [lattice.build("ctc", t) for t in tg])
    for x, y in zip(fast, slow):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("targets, options, exc, match", [
    ([[1, 0, 2]], {}, ValueError, "blank id 0 at position 1"),
    ([[1, 2], [2, 3, 7]], {"blank": 7}, ValueError,
     "targets\\[1\\] contains the blank id 7 at position 2"),
    ([[1], [-2]], {}, ValueError, "targets\\[1\\] holds a negative"),
    ([[1.5]], {}, TypeError, "targets\\[0\\] must hold integer"),
    ([[[1]]], {}, ValueError, "targets\\[0\\] must be a 1-D"),
    ([[1]], {"between": "sometimes"}, ValueError, "between must be one of"),
    ([[1]], {"blank": -1}, ValueError, "blank must be >= 0"),
])
def test_ctc_build_batch_rejects_bad_input(targets, options, exc, match):
    with pytest.raises(exc, match=match):
        lattice.build_batch("ctc", targets, **options)


@pytest.mark.parametrize("targets, match", [
    ([[1], [], [2, 0, 3]], "targets\\[2\\] contains the blank id 0 at position 1"),
    ([[1], [-2]], "targets\\[1\\] holds a negative"),
])
def test_ctc_build_batch_names_the_bad_target_of_int64_arrays(targets, match):
    # int64 arrays (what lattice.torch passes) are checked all at once; the message
    # must still name the example and the position
    with pytest.raises(ValueError, match=match):
        lattice.build_batch("ctc", [np.array(t, dtype=np.int64) for t in targets])


U64_MAX = 2**64 - 1


@pytest.mark.parametrize("name", ["ctc", "segmentation"])
def test_build_batch_reports_big_unsigned_ids_with_their_true_value(name):
    """uint64 2**64 - 1 must not become the id -1 (ctc's batch path made a graph of
    it, with the label -1)."""
    targets = [np.array([1], dtype=np.uint64), np.array([2, U64_MAX], dtype=np.uint64)]
    with pytest.raises(ValueError, match=rf"{U64_MAX}.*int32") as info:
        lattice.build_batch(name, targets)
    assert "negative" not in str(info.value)
    if name == "ctc":  # the vectorised path names the example
        assert str(info.value).startswith("targets[1] ")
    with pytest.raises(ValueError, match=rf"targets\[0\] .*{2**31}.*int32"):
        lattice.build_batch("ctc", [np.array([2**31])])  # the int64 fast path
    with pytest.raises(ValueError, match=rf"blank .*{U64_MAX}.*int32"):
        lattice.build_batch("ctc", [[1]], blank=np.uint64(U64_MAX))


@pytest.mark.parametrize("name", ["ctc", "segmentation"])
def test_build_batch_refuses_timedelta_targets_and_options(name):
    with pytest.raises(TypeError, match="must hold integer symbol ids.*timedelta64"):
        lattice.build_batch(name, [[1], np.array([1, 2], dtype="m8[s]")])
    option = "blank" if name == "ctc" else "min_frames"
    with pytest.raises(TypeError, match=option):
        lattice.build_batch(name, [[1]], **{option: np.timedelta64(1)})


def test_build_batch_without_a_vectorised_builder_loops():
    tg = [[1, 2], [3], [4, 4, 4]]
    assert not hasattr(registry.get_builder("segmentation"), "build_batch")
    assert_same_batch(lattice.build_batch("segmentation", tg, min_frames=2),
                      lattice.batch([lattice.build("segmentation", t, min_frames=2)
                                     for t in tg]))


def test_build_batch_unknown_name():
    with pytest.raises(lattice.UnknownGraphError, match="available: .*ctc"):
        lattice.build_batch("no-such-graph", [[1]])


# --------------------------------------------------------------------------------
# GraphBatch.from_padded
# --------------------------------------------------------------------------------


def _padded(graphs):
    gb = lattice.batch(graphs)
    return {name: getattr(gb, name) for name in _ARRAYS[:9]}, gb


def test_from_padded_round_trip_and_ignores_padding():
    graphs = [lattice.build("ctc", [1, 2, 2]), lattice.build("segmentation", [3]),
              lattice.build("hmm", [1, 2], states=3)]
    arrays, gb = _padded(graphs)
    # garbage in the padding must not matter
    dirty = {k: np.array(v, copy=True) for k, v in arrays.items()}
    for name in ("labels", "tokens", "start", "final"):
        dirty[name][np.arange(gb.max_states) >= gb.num_states[:, None]] = 7
    for name in ("src", "dst", "weight"):
        dirty[name][np.arange(gb.max_arcs) >= gb.num_arcs[:, None]] = 99
    assert_same_batch(lattice.GraphBatch.from_padded(**dirty), gb)


@pytest.mark.parametrize("field, row, value, exc, match", [
    ("labels", 1, -1, ValueError, "labels of example 1 holds a negative"),
    ("tokens", 0, -2, ValueError, "tokens of example 0 holds a token below -1"),
    ("src", 1, 5, ValueError, "src of example 1 refers to a state outside"),
    ("dst", 0, -1, ValueError, "dst of example 0 refers to a state outside"),
    ("weight", 1, np.nan, ValueError, "weight of example 1 contains NaN"),
    ("start", 0, np.inf, ValueError, "start of example 0 contains \\+inf"),
    ("final", 1, np.nan, ValueError, "final of example 1 contains NaN"),
])
def test_from_padded_rejects_bad_rows(field, row, value, exc, match):
    arrays, _ = _padded([lattice.build("ctc", [1, 2]), lattice.build("ctc", [3])])
    arr = np.array(arrays[field], dtype=np.float64 if field in (
        "weight", "start", "final") else np.int64)
    arr[row, 0] = value
    arrays[field] = arr
    with pytest.raises(exc, match=match):
        lattice.GraphBatch.from_padded(**arrays)


def test_from_padded_rejects_bad_shapes_and_types():
    arrays, _ = _padded([lattice.build("ctc", [1, 2]), lattice.build("ctc", [3])])
    with pytest.raises(ValueError, match="num_arcs must have shape \\(2,\\)"):
        lattice.GraphBatch.from_padded(**{**arrays, "num_arcs": [10]})
    with pytest.raises(ValueError, match="num_states must lie in"):
        lattice.GraphBatch.from_padded(**{**arrays, "num_states": [-1, 3]})
    with pytest.raises(TypeError, match="num_states must hold integers"):
        lattice.GraphBatch.from_padded(**{**arrays, "num_states": [5.0, 3.0]})
    with pytest.raises(ValueError, match="labels must have shape \\(2, >= 5\\)"):
        lattice.GraphBatch.from_padded(**{**arrays, "labels": arrays["labels"][:, :3]})
    with pytest.raises(TypeError, match="src must hold integers"):
        lattice.GraphBatch.from_padded(**{**arrays, "src": arrays["src"] * 1.0})
    with pytest.raises(TypeError, match="weight must hold real numbers"):
        lattice.GraphBatch.from_padded(**{**arrays, "weight": arrays["weight"] > 0})


@pytest.mark.parametrize("field", ["num_states", "num_arcs", "labels", "tokens", "src",
                                   "dst", "start", "final", "weight"])
def test_from_padded_refuses_timedelta_arrays(field):
    """timedelta64 is a numpy "integer" subclass (kind "m"): neither an id nor a
    weight."""
    arrays, _ = _padded([lattice.build("ctc", [1, 2]), lattice.build("ctc", [3])])
    arrays[field] = np.zeros(np.shape(arrays[field]), dtype="m8[s]")
    with pytest.raises(TypeError, match=rf"^{field} must hold .*got dtype timedelta64"):
        lattice.GraphBatch.from_padded(**arrays)


def test_from_padded_reports_big_unsigned_sizes_with_their_true_value():
    arrays, _ = _padded([lattice.build("ctc", [1, 2]), lattice.build("ctc", [3])])
    sizes = np.array([5, 2**64 - 1], dtype=np.uint64)
    with pytest.raises(ValueError, match=rf"num_states must lie in \[0, 2147483647\], "
                                         rf"got {2**64 - 1} \(example 1\)"):
        lattice.GraphBatch.from_padded(**{**arrays, "num_states": sizes})
    labels = np.array(arrays["labels"], dtype=np.uint64)
    labels[1, 0] = 2**64 - 1
    with pytest.raises(ValueError, match="labels of example 1 holds a negative label or "
                                         "one beyond int32"):
        lattice.GraphBatch.from_padded(**{**arrays, "labels": labels})


def test_csr_indexes_are_built_when_first_read():
    """A banded batch never needs the CSR indexes: the engine's fast path leaves them
    unbuilt; reading one builds all four, read-only, equal to a Graph-built batch."""
    gb = lattice.build_batch("ctc", [[1, 2], [3]])
    lattice.forward_backward(np.zeros((2, 5, 4)), gb)
    lattice.viterbi(np.zeros((2, 5, 4)), gb)
    assert gb._csr is None
    ref = lattice.batch([lattice.build("ctc", [1, 2]), lattice.build("ctc", [3])])
    for name in ("in_ptr", "in_arc", "out_ptr", "out_arc"):
        value = getattr(gb, name)
        assert not value.flags.writeable, name
        np.testing.assert_array_equal(value, getattr(ref, name), err_msg=name)
    assert gb.max_in_degree == ref.max_in_degree == 3


def test_ctc_build_batch_rejects_ids_beyond_int32_like_build():
    """The batch builder writes int32 arrays itself: an id that would wrap is an
    error, as it is for lattice.build."""
    with pytest.raises(ValueError, match="int32"):
        lattice.build("ctc", [2**31])
    with pytest.raises(ValueError, match="int32"):
        lattice.build_batch("ctc", [[1], [2**31]])
    with pytest.raises(ValueError, match="int32"):
        lattice.build("ctc", [1], blank=2**31)
    with pytest.raises(ValueError, match="int32"):
        lattice.build_batch("ctc", [[1]], blank=2**31)
    assert lattice.build_batch("ctc", [[2**31 - 1]]).labels.max() == 2**31 - 1


# --------------------------------------------------------------------------------
# sizes beyond int32: refused before anything is allocated
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("limit, targets, bad", [
    # S = 2 K + 1 states, 4 K + 1 arcs and a skip per change of symbol
    (19, [[5], [1, 2, 2, 3]], None),  # 19 arcs: at the limit
    (19, [[5], [1, 2, 3, 4]], 1),  # 20 arcs
    (20, [[1, 2, 3, 4], [7] * 4], None),
    (21, [[1, 2, 3, 4, 5], [7]], 0),  # 11 states, 25 arcs
    (25, [[7], [1, 2, 3, 4, 5]], None),
])
@pytest.mark.parametrize("as_int64", [False, True])  # the fast path of lattice.torch
def test_ctc_build_batch_sizes_at_and_beyond_the_limit(monkeypatch, limit, targets, bad,
                                                       as_int64):
    """count_arcs counts into int32, so the size is checked before it runs."""
    if as_int64:
        targets = [np.array(t, dtype=np.int64) for t in targets]
    monkeypatch.setattr(lattice.checks, "SIZE_LIMIT", limit)
    if bad is None:
        gb = lattice.build_batch("ctc", targets)
        assert int(gb.num_arcs.max()) <= limit and int(gb.num_states.max()) <= limit
        return
    with pytest.raises(ValueError, match=rf"^targets\[{bad}\] of {len(targets[bad])} "
                                         rf"symbols would make .* at most {limit}"):
        lattice.build_batch("ctc", targets)


@pytest.mark.parametrize("name, options, match", [
    ("segmentation", {"min_frames": 2**30}, r"min_frames=1073741824 .* 2147483648 states"),
    ("hmm", {"states": 2**31}, r"states=2147483648,.* 4294967296 states"),
])
def test_build_batch_graph_by_graph_refuses_sizes_beyond_int32(name, options, match):
    """The registry's loop over build(): the first graph too large is refused before it
    is made (the second target alone would be a legal graph of 2**30 states)."""
    with pytest.raises(ValueError, match=match + r".*int32.*at most 2147483647"):
        lattice.build_batch(name, [[1, 2], [1]], **options)

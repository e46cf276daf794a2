"""Graph, GraphBuilder and GraphBatch: validation, immutability, padding, CSR indexes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lattice
from lattice import Graph, GraphBatch, GraphBuilder

NEG = -np.inf


def base_kwargs():
    """A valid 3-state, 4-arc graph; tests override one argument at a time."""
    return dict(
        labels=[0, 1, 2],
        src=[0, 0, 1, 2],
        dst=[0, 1, 2, 2],
        weight=[0.0, -1.0, 0.0, -0.5],
        start=[0.0, NEG, NEG],
        final=[NEG, NEG, 0.0],
        tokens=[0, 1, -1],
    )


def make(**override):
    kw = base_kwargs()
    kw.update(override)
    return Graph(**kw)


# --------------------------------------------------------------------------------
# construction
# --------------------------------------------------------------------------------


def test_valid_graph_contents_and_dtypes():
    g = make()
    assert g.num_states == 3 and g.num_arcs == 4
    assert isinstance(g.num_states, int) and isinstance(g.num_arcs, int)
    for name in ("labels", "src", "dst", "tokens"):
        assert getattr(g, name).dtype == np.int32, name
    for name in ("weight", "start", "final"):
        assert getattr(g, name).dtype == np.float64, name
    kw = base_kwargs()
    for name, value in kw.items():
        np.testing.assert_array_equal(getattr(g, name), np.asarray(value), err_msg=name)


def test_weight_none_means_zeros_and_tokens_default_to_arange():
    g = make(weight=None, tokens=None)
    np.testing.assert_array_equal(g.weight, np.zeros(4))
    np.testing.assert_array_equal(g.tokens, np.arange(3))
    assert g.tokens.dtype == np.int32


def test_accepts_any_integer_dtype_and_integer_weights():
    g = Graph(
        labels=np.array([0, 1, 2], dtype=np.uint8),
        src=np.array([0, 0, 1, 2], dtype=np.int16),
        dst=np.array([0, 1, 2, 2], dtype=np.uint64),
        weight=np.array([0, -1, 0, -2], dtype=np.int64),
        start=np.array([0, 0, 0], dtype=np.float32),
        final=[0, 0, 0],
        tokens=np.array([0, -1, 1], dtype=np.int8),
    )
    assert g == Graph([0, 1, 2], [0, 0, 1, 2], [0, 1, 2, 2], [0.0, -1.0, 0.0, -2.0],
                      [0.0] * 3, [0.0] * 3, tokens=[0, -1, 1])


def test_neg_inf_weights_are_allowed():
    g = make(weight=[NEG, NEG, 0.0, NEG], start=[NEG] * 3, final=[NEG] * 3)
    assert np.isneginf(g.start).all() and np.isneginf(g.final).all()
    assert np.isneginf(g.weight).sum() == 3


def test_scalar_start_final_weight_broadcast():
    g = make(start=0.0, final=NEG, weight=-0.25)
    np.testing.assert_array_equal(g.start, np.zeros(3))
    np.testing.assert_array_equal(g.final, np.full(3, NEG))
    np.testing.assert_array_equal(g.weight, np.full(4, -0.25))
    assert g.start.shape == (3,) and g.weight.shape == (4,)


def test_scalar_nan_start_still_rejected():
    with pytest.raises(ValueError, match="start"):
        make(start=np.nan)
    with pytest.raises(ValueError, match="final"):
        make(final=np.inf)


def test_empty_graph_allowed():
    g = Graph([], [], [], None, [], [])
    assert g.num_states == 0 and g.num_arcs == 0
    assert g.labels.dtype == np.int32 and g.src.dtype == np.int32
    assert g.tokens.shape == (0,)
    assert repr(g) == "Graph(num_states=0, num_arcs=0)"
    # an empty graph has no path: score -inf, not an error
    assert np.isneginf(lattice.forward(np.zeros((1, 3, 2)), [g])[0])


def test_states_without_arcs_allowed():
    g = Graph([1, 0], [], [], None, 0.0, 0.0)
    assert g.num_states == 2 and g.num_arcs == 0
    np.testing.assert_array_equal(g.weight, np.zeros(0))


def test_inputs_are_copied():
    labels = np.array([0, 1, 2])
    weight = np.array([0.0, -1.0, 0.0, -0.5])
    start = np.array([0.0, NEG, NEG])
    g = make(labels=labels, weight=weight, start=start)
    labels[0] = 2
    weight[0] = -7.0
    start[0] = -3.0
    assert g.labels[0] == 0 and g.weight[0] == 0.0 and g.start[0] == 0.0


# --------------------------------------------------------------------------------
# validation: every error names the argument
# --------------------------------------------------------------------------------

BAD_INPUTS = [
    # dtypes
    ("labels", [0.0, 1.0, 2.0], TypeError, "labels"),
    ("labels", [True, False, True], TypeError, "labels"),
    ("labels", ["a", "b", "c"], TypeError, "labels"),
    ("src", [0.0, 0.0, 1.0, 2.0], TypeError, "src"),
    ("src", [False, False, True, True], TypeError, "src"),
    ("dst", [0.0, 1.0, 2.0, 2.0], TypeError, "dst"),
    ("tokens", [0.0, 1.0, -1.0], TypeError, "tokens"),
    ("tokens", [True, True, False], TypeError, "tokens"),
    ("weight", ["a", "b", "c", "d"], TypeError, "weight"),
    ("weight", [True, False, True, False], TypeError, "weight"),
    ("weight", np.zeros(4, dtype=complex), TypeError, "weight"),
    ("start", ["x", "y", "z"], TypeError, "start"),
    ("final", np.zeros(3, dtype=complex), TypeError, "final"),
    # ndim
    ("labels", [[0, 1, 2]], ValueError, "labels"),
    ("labels", 3, ValueError, "labels"),
    ("src", [[0, 0], [1, 2]], ValueError, "src"),
    ("dst", [[0, 1], [2, 2]], ValueError, "dst"),
    ("weight", np.zeros((2, 2)), ValueError, "weight"),
    ("start", np.zeros((3, 1)), ValueError, "start"),
    ("final", np.zeros((1, 3)), ValueError, "final"),
    ("tokens", [[0, 1, -1]], ValueError, "tokens"),
    # lengths
    ("dst", [0, 1, 2], ValueError, "dst"),
    ("dst", [0, 1, 2, 2, 2], ValueError, "dst"),
    ("weight", [0.0, 0.0, 0.0], ValueError, "weight"),
    ("weight", [0.0] * 5, ValueError, "weight"),
    ("start", [0.0, 0.0], ValueError, "start"),
    ("start", [0.0] * 4, ValueError, "start"),
    ("final", [0.0, 0.0], ValueError, "final"),
    ("final", [0.0] * 4, ValueError, "final"),
    ("tokens", [0, 1], ValueError, "tokens"),
    ("tokens", [0, 1, 2, 3], ValueError, "tokens"),
    # ranges
    ("labels", [0, -1, 2], ValueError, "labels"),
    ("labels", [0, 1, 2**40], ValueError, "labels"),
    ("src", [0, 0, 1, 3], ValueError, "src"),
    ("src", [0, -1, 1, 2], ValueError, "src"),
    ("src", [0, 0, 1, 2**31 + 5], ValueError, "src"),
    ("dst", [0, 1, 2, 3], ValueError, "dst"),
    ("dst", [0, 1, -2, 2], ValueError, "dst"),
    ("tokens", [0, -2, 1], ValueError, "tokens"),
    # NaN / +inf
    ("weight", [0.0, np.nan, 0.0, 0.0], ValueError, "weight"),
    ("weight", [0.0, np.inf, 0.0, 0.0], ValueError, "weight"),
    ("start", [np.nan, 0.0, 0.0], ValueError, "start"),
    ("start", [np.inf, 0.0, 0.0], ValueError, "start"),
    ("final", [0.0, 0.0, np.nan], ValueError, "final"),
    ("final", [0.0, np.inf, 0.0], ValueError, "final"),
]


@pytest.mark.parametrize(
    "name, value, exc, match",
    BAD_INPUTS,
    ids=[f"{n}-{i}" for i, (n, *_rest) in enumerate(BAD_INPUTS)],
)
def test_bad_input_raises_naming_argument(name, value, exc, match):
    with pytest.raises(exc, match=match):
        make(**{name: value})


def test_nan_and_inf_messages_say_what_is_wrong():
    with pytest.raises(ValueError, match="NaN"):
        make(weight=[0.0, np.nan, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"\+inf"):
        make(start=[np.inf, 0.0, 0.0])


def test_arc_endpoint_message_gives_valid_range():
    with pytest.raises(ValueError, match=r"state 7.*3 states"):
        make(dst=[0, 1, 7, 2])


def test_arcs_in_graph_without_states_rejected():
    with pytest.raises(ValueError, match="src"):
        Graph([], [0], [0], None, [], [])


U64_MAX = 2**64 - 1  # numpy casts it to int64 -1 when it is not careful


@pytest.mark.parametrize("name", ["labels", "src", "dst", "tokens"])
def test_big_unsigned_ids_are_reported_with_their_true_value(name):
    """A uint64 id of 2**64 - 1 is beyond int32, not "-1" / "negative"."""
    value = base_kwargs()[name]
    bad = np.array(value[:-1] + [U64_MAX], dtype=np.uint64)
    with pytest.raises(ValueError, match=rf"^{name} .*{U64_MAX}.*int32") as info:
        make(**{name: bad})
    assert "-1" not in str(info.value) and "negative" not in str(info.value)
    # a Python int beyond uint64 (numpy makes an object array of it) likewise
    with pytest.raises(ValueError, match=rf"^{name} .*{2**70}.*int32"):
        make(**{name: value[:-1] + [2**70]})


@pytest.mark.parametrize("name", ["labels", "src", "dst", "tokens", "weight", "start",
                                  "final"])
@pytest.mark.parametrize("dtype", ["m8[s]", "M8[s]", object])
def test_ids_and_weights_of_a_non_number_kind_are_refused(name, dtype):
    """timedelta64 is a numpy "integer" subclass (kind "m"): never an id or a weight."""
    value = np.array(base_kwargs()[name], dtype=np.float64)
    value = np.where(np.isfinite(value), value, 0).astype(np.int64)
    with pytest.raises(TypeError, match=rf"^{name} must hold .*got dtype"):
        make(**{name: value.astype(dtype)})


def test_builder_big_unsigned_and_timedelta_scalars():
    b = GraphBuilder()
    with pytest.raises(ValueError, match=rf"label .*{U64_MAX}.*int32"):
        b.add_state(np.uint64(U64_MAX))
    with pytest.raises(ValueError, match=rf"token .*{U64_MAX}.*int32"):
        b.add_state(1, token=np.uint64(U64_MAX))
    with pytest.raises(ValueError, match=rf"label .*{2**31}.*int32"):
        b.add_state(2**31)
    for bad in (np.timedelta64(3), np.datetime64(3, "s"), np.bool_(True)):
        with pytest.raises(TypeError, match="label"):
            b.add_state(bad)
        with pytest.raises(TypeError, match="token"):
            b.add_state(1, token=bad)
    assert b.num_states == 0  # nothing was added
    b.add_state(np.uint64(2**31 - 1), start=0.0, final=0.0, token=np.uint8(0))
    with pytest.raises(TypeError, match="src"):
        b.add_arc(np.timedelta64(0), 0)
    with pytest.raises(ValueError, match=rf"dst={U64_MAX} is not a state"):
        b.add_arc(0, np.uint64(U64_MAX))
    assert b.build().labels.tolist() == [2**31 - 1]


@pytest.mark.parametrize("name", ["labels", "src", "tokens"])
def test_arrays_beyond_int32_states_or_arcs_are_refused_before_the_copy(name):
    """A zero-stride view of 2**31 ids costs no memory; copying it would cost 8 GB."""
    huge = np.broadcast_to(np.int8(0), (2**31,))
    kwargs = base_kwargs()
    kwargs[name] = huge
    if name == "src":
        kwargs["dst"] = huge
    with pytest.raises(ValueError, match=rf"^{name} has 2147483648 values.*int32.*"
                                         r"at most 2147483647"):
        Graph(**kwargs)


# --------------------------------------------------------------------------------
# immutability, equality, repr
# --------------------------------------------------------------------------------

FIELDS = ("labels", "src", "dst", "weight", "start", "final", "tokens")


@pytest.mark.parametrize("name", FIELDS)
def test_attributes_cannot_be_set(name):
    g = make()
    before = getattr(g, name).copy()
    with pytest.raises(AttributeError):
        setattr(g, name, np.zeros(3))
    np.testing.assert_array_equal(getattr(g, name), before)


def test_new_attributes_cannot_be_added():
    g = make()
    with pytest.raises(AttributeError):
        g.extra = 1


def test_attributes_cannot_be_deleted():
    g = make()
    for name in FIELDS:
        with pytest.raises(AttributeError):
            delattr(g, name)
        assert getattr(g, name) is not None, name


@pytest.mark.parametrize("name", FIELDS)
def test_arrays_are_read_only(name):
    g = make()
    arr = getattr(g, name)
    assert not arr.flags.writeable
    with pytest.raises(ValueError):
        arr[0] = 1


def test_equality():
    a, b = make(), make()
    assert a == b and not (a != b)
    assert make(weight=None) == make(weight=[0.0] * 4)
    assert make(tokens=None) == make(tokens=[0, 1, 2])
    assert make(start=0.0) == make(start=[0.0, 0.0, 0.0])
    for name, value in [
        ("labels", [0, 1, 1]),
        ("src", [0, 0, 1, 1]),
        ("dst", [0, 2, 2, 2]),
        ("weight", [0.0, -1.0, 0.0, -0.25]),
        ("start", [0.0, 0.0, NEG]),
        ("final", [NEG, 0.0, 0.0]),
        ("tokens", [0, -1, -1]),
    ]:
        assert make(**{name: value}) != a, name
    assert Graph([], [], [], None, [], []) == Graph([], [], [], None, [], [])
    assert Graph([], [], [], None, [], []) != a


def test_comparison_with_other_types():
    g = make()
    assert (g == 5) is False
    assert g != "graph"
    assert g != None  # noqa: E711


def test_unhashable():
    with pytest.raises(TypeError):
        hash(make())


def test_repr():
    assert repr(make()) == "Graph(num_states=3, num_arcs=4)"


# --------------------------------------------------------------------------------
# GraphBuilder
# --------------------------------------------------------------------------------


def test_builder_builds_the_equivalent_graph():
    b = GraphBuilder()
    assert b.num_states == 0 and b.num_arcs == 0
    s0 = b.add_state(0, start=0.0, token=0)
    s1 = b.add_state(1, token=1)
    s2 = b.add_state(2, final=0.0, token=-1)
    assert (s0, s1, s2) == (0, 1, 2)
    ids = [b.add_arc(0, 0), b.add_arc(0, 1, -1.0), b.add_arc(1, 2), b.add_arc(2, 2, weight=-0.5)]
    assert ids == [0, 1, 2, 3]
    assert b.num_states == 3 and b.num_arcs == 4
    assert b.build() == make()


def test_builder_defaults():
    b = GraphBuilder()
    b.add_state(4)
    b.add_state(2, start=-1.5, final=-2.5)
    g = b.build()
    np.testing.assert_array_equal(g.start, [NEG, -1.5])
    np.testing.assert_array_equal(g.final, [NEG, -2.5])
    np.testing.assert_array_equal(g.tokens, [0, 1])
    assert g.num_arcs == 0


def test_builder_empty():
    g = GraphBuilder().build()
    assert g == Graph([], [], [], None, [], [])


def test_builder_is_reusable_and_built_graphs_are_independent():
    b = GraphBuilder()
    b.add_state(0, start=0.0, final=0.0)
    g1 = b.build()
    b.add_arc(0, 0)
    g2 = b.build()
    assert g1.num_arcs == 0 and g2.num_arcs == 1
    assert b.build() == g2


def test_builder_accepts_numpy_integers():
    b = GraphBuilder()
    s = b.add_state(np.int64(3), start=0.0, final=0.0)
    b.add_arc(np.int32(s), np.int64(s))
    assert b.build().labels.tolist() == [3]


@pytest.mark.parametrize("label", [1.5, 2.0, "1", None, True, False, np.float64(1.0)])
def test_builder_non_int_label(label):
    with pytest.raises(TypeError, match="label"):
        GraphBuilder().add_state(label)


def test_builder_negative_label():
    with pytest.raises(ValueError, match="label"):
        GraphBuilder().add_state(-1)


@pytest.mark.parametrize(
    "src, dst, exc, match",
    [
        (0, 2, ValueError, "dst"),
        (2, 0, ValueError, "src"),
        (0, -1, ValueError, "dst"),
        (-1, 0, ValueError, "src"),
        (0.0, 1, TypeError, "src"),
        (0, 1.0, TypeError, "dst"),
        (True, 1, TypeError, "src"),
        (0, "1", TypeError, "dst"),
    ],
)
def test_builder_bad_arc(src, dst, exc, match):
    b = GraphBuilder()
    b.add_state(0, start=0.0)
    b.add_state(1, final=0.0)
    with pytest.raises(exc, match=match):
        b.add_arc(src, dst)
    assert b.num_arcs == 0  # nothing was added


def test_builder_arc_to_missing_state_in_empty_builder():
    with pytest.raises(ValueError, match="src"):
        GraphBuilder().add_arc(0, 0)


def test_builder_nan_weight_rejected_at_build():
    b = GraphBuilder()
    s = b.add_state(0, start=0.0, final=0.0)
    b.add_arc(s, s, weight=np.nan)
    with pytest.raises(ValueError, match="weight"):
        b.build()


def test_builder_inf_start_rejected_at_build():
    b = GraphBuilder()
    b.add_state(0, start=np.inf, final=0.0)
    with pytest.raises(ValueError, match="start"):
        b.build()


def test_builder_bad_token_rejected():
    b = GraphBuilder()
    with pytest.raises(ValueError, match="token must be >= -1"):
        b.add_state(0, start=0.0, final=0.0, token=-2)


def test_builder_non_integer_token_rejected():
    """A fractional token must not be silently truncated (Graph rejects float tokens)."""
    b = GraphBuilder()
    with pytest.raises(TypeError, match="token"):
        b.add_state(0, start=0.0, final=0.0, token=1.5)
        b.build()


# --------------------------------------------------------------------------------
# GraphBatch
# --------------------------------------------------------------------------------


@st.composite
def graphs(draw):
    S = draw(st.integers(0, 6))
    A = draw(st.integers(0, 12)) if S else 0
    idx = st.integers(0, S - 1) if S else st.nothing()
    weights = st.sampled_from([0.0, -0.5, -1.0, -np.inf, 1.25])
    return Graph(
        labels=draw(st.lists(st.integers(0, 9), min_size=S, max_size=S)),
        src=draw(st.lists(idx, min_size=A, max_size=A)),
        dst=draw(st.lists(idx, min_size=A, max_size=A)),
        weight=draw(st.lists(weights, min_size=A, max_size=A)),
        start=draw(st.lists(weights, min_size=S, max_size=S)),
        final=draw(st.lists(weights, min_size=S, max_size=S)),
        tokens=draw(st.lists(st.integers(-1, 5), min_size=S, max_size=S)),
    )


def check_batch(gb, gs):
    B = len(gs)
    assert len(gb) == B
    assert gb.graphs == tuple(gs)
    S_max = max([0] + [g.num_states for g in gs])
    A_max = max([0] + [g.num_arcs for g in gs])
    assert gb.max_states == S_max and gb.max_arcs == A_max
    assert gb.num_states.tolist() == [g.num_states for g in gs]
    assert gb.num_arcs.tolist() == [g.num_arcs for g in gs]
    shapes = {
        "labels": (B, S_max), "tokens": (B, S_max), "start": (B, S_max),
        "final": (B, S_max), "src": (B, A_max), "dst": (B, A_max), "weight": (B, A_max),
        "in_ptr": (B, S_max + 1), "out_ptr": (B, S_max + 1),
        "in_arc": (B, A_max), "out_arc": (B, A_max),
    }  # fmt: skip
    for name, shape in shapes.items():
        arr = getattr(gb, name)
        assert arr.shape == shape, name
        assert not arr.flags.writeable, name
        with pytest.raises(ValueError):
            arr[...] = 0
    for name in ("labels", "tokens", "src", "dst", "in_ptr", "out_ptr", "in_arc", "out_arc"):
        assert getattr(gb, name).dtype == np.int32, name
    for name in ("weight", "start", "final"):
        assert getattr(gb, name).dtype == np.float64, name
    for name in ("num_states", "num_arcs"):
        assert not getattr(gb, name).flags.writeable, name

    max_in = 0
    for b, g in enumerate(gs):
        S, A = g.num_states, g.num_arcs
        # contents, then padding
        for name in ("labels", "tokens", "start", "final"):
            np.testing.assert_array_equal(getattr(gb, name)[b, :S], getattr(g, name))
        for name in ("src", "dst", "weight"):
            np.testing.assert_array_equal(getattr(gb, name)[b, :A], getattr(g, name))
        assert np.all(gb.labels[b, S:] == 0)
        assert np.all(gb.tokens[b, S:] == -1)
        assert np.all(np.isneginf(gb.start[b, S:])) and np.all(np.isneginf(gb.final[b, S:]))
        assert np.all(gb.src[b, A:] == 0) and np.all(gb.dst[b, A:] == 0)
        assert np.all(gb.weight[b, A:] == 0)
        # CSR: arcs entering / leaving each state, in the canonical order: in-arcs
        # by decreasing source, out-arcs by increasing destination, then arc id
        in_key = lambda a: (-int(g.src[a]), a)  # noqa: E731
        out_key = lambda a: (int(g.dst[a]), a)  # noqa: E731
        for ptr, arcs, ends, key in ((gb.in_ptr, gb.in_arc, g.dst, in_key),
                                     (gb.out_ptr, gb.out_arc, g.src, out_key)):
            assert ptr[b, 0] == 0
            assert np.all(np.diff(ptr[b]) >= 0)
            assert np.all(ptr[b, S:] == A)
            for s in range(S):
                got = arcs[b, ptr[b, s] : ptr[b, s + 1]].tolist()
                assert got == sorted((a for a in range(A) if ends[a] == s), key=key), (b, s)
            assert sorted(arcs[b, :A].tolist()) == list(range(A))
        if A:
            max_in = max(max_in, int(np.bincount(g.dst, minlength=S).max()))
    assert gb.max_in_degree == max_in
    labels = [int(g.labels.max()) for g in gs if g.num_states]
    assert gb.max_label == (max(labels) if labels else -1)


@settings(max_examples=80, deadline=None)
@given(st.lists(graphs(), min_size=0, max_size=5))
def test_batch_padding_and_csr(gs):
    check_batch(lattice.batch(gs), gs)


def test_batch_of_builtin_graphs():
    gs = [lattice.build("ctc", [1, 2, 2]), lattice.build("segmentation", [3, 1], min_frames=2),
          lattice.build("ctc", []), Graph([], [], [], None, [], [])]
    gb = lattice.batch(gs)
    check_batch(gb, gs)
    assert isinstance(gb, GraphBatch)
    assert repr(gb) == "GraphBatch(size=4, max_states=7, max_arcs=14)"


def test_batch_csr_stable_order_with_parallel_arcs():
    g = Graph([0, 1], src=[1, 0, 0, 1, 0], dst=[0, 1, 1, 0, 0], weight=None,
              start=0.0, final=0.0)
    gb = lattice.batch([g])
    # into 0: arcs 0, 3 (from 1), then 4 (from 0); into 1: arcs 1, 2 (from 0)
    assert gb.in_ptr[0].tolist() == [0, 3, 5]
    assert gb.in_arc[0].tolist() == [0, 3, 4, 1, 2]
    # out of 0: arc 4 (to 0), then 1, 2 (to 1); out of 1: arcs 0, 3 (to 0)
    assert gb.out_ptr[0].tolist() == [0, 3, 5]
    assert gb.out_arc[0].tolist() == [4, 1, 2, 0, 3]
    assert gb.max_in_degree == 3


def test_batch_empty_list():
    gb = lattice.batch([])
    assert len(gb) == 0
    assert gb.labels.shape == (0, 0) and gb.in_ptr.shape == (0, 1)
    assert gb.max_label == -1 and gb.max_in_degree == 0


def test_batch_accepts_any_iterable():
    gs = [lattice.build("ctc", [1]), lattice.build("ctc", [2, 3])]
    check_batch(lattice.batch(iter(gs)), gs)
    check_batch(lattice.batch(tuple(gs)), gs)


def test_batch_of_batch_is_identity():
    gb = lattice.batch([lattice.build("ctc", [1])])
    assert lattice.batch(gb) is gb


def test_batch_of_single_graph_raises():
    with pytest.raises(TypeError, match="list"):
        lattice.batch(lattice.build("ctc", [1]))


@pytest.mark.parametrize("bad", ["ctc", None, 3, [0, 1]])
def test_batch_non_graph_element_names_index(bad):
    gs = [lattice.build("ctc", [1]), lattice.build("ctc", [2]), bad]
    with pytest.raises(TypeError, match=r"graphs\[2\]"):
        lattice.batch(gs)


def test_weights_as_caches_per_dtype():
    g = make(weight=[0.0, -1.0 / 3.0, NEG, -0.5])
    gb = lattice.batch([g, lattice.build("ctc", [1, 2])])
    w32 = gb.weights_as(np.float32)
    assert isinstance(w32, tuple) and len(w32) == 3
    assert gb.weights_as(np.float32) is w32
    assert gb.weights_as("float32") is w32
    assert gb.weights_as(np.dtype(np.float32)) is w32
    w64 = gb.weights_as(np.float64)
    assert w64 is not w32 and gb.weights_as(np.float64) is w64
    for cast, orig in zip(w32, (gb.weight, gb.start, gb.final)):
        assert cast.dtype == np.float32
        assert cast.shape == orig.shape
        assert cast.flags.c_contiguous and not cast.flags.writeable
        np.testing.assert_array_equal(cast, orig.astype(np.float32))
    for cast, orig in zip(w64, (gb.weight, gb.start, gb.final)):
        assert cast.dtype == np.float64 and not cast.flags.writeable
        np.testing.assert_array_equal(cast, orig)

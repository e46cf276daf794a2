"""Bad inputs to forward / forward_backward / viterbi give clear exceptions.

Every error names the offending argument. Also: a single Graph is broadcast, empty
batches and zero frames work, NaN at a used position is never silently returned.
"""

import numpy as np
import pytest

import lattice

FUNCS = {
    "forward": lattice.forward,
    "forward_backward": lattice.forward_backward,
    "viterbi": lattice.viterbi,
}


@pytest.fixture(params=list(FUNCS))
def fn(request):
    return FUNCS[request.param]


def score_of(result):
    """The (B,) scores of any of the three functions."""
    if isinstance(result, np.ndarray):
        return result
    return result.score


def setup(B=2, T=5, C=4):
    rng = np.random.default_rng(0)
    e = rng.standard_normal((B, T, C))
    graphs = [lattice.build("ctc", [1, 2]), lattice.build("segmentation", [3, 1])][:B]
    graphs += [lattice.build("ctc", [2])] * (B - len(graphs))
    return e, graphs


# --------------------------------------------------------------------------------
# emissions
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.complex128, np.bool_])
def test_emissions_bad_dtype(fn, dtype):
    e, graphs = setup()
    with pytest.raises(TypeError, match="emissions"):
        fn(e.astype(dtype), graphs)


def test_emissions_dtype_message_lists_accepted(fn):
    e, graphs = setup()
    with pytest.raises(TypeError, match=r"float32.*float64.*float16"):
        fn(e.astype(np.float16), graphs)


@pytest.mark.parametrize("shape", [(5, 4), (4,), (), (2, 5, 4, 1)])
def test_emissions_bad_ndim(fn, shape):
    _, graphs = setup()
    with pytest.raises(ValueError, match="emissions"):
        fn(np.zeros(shape), graphs)


def test_emissions_torch_tensor(fn):
    torch = pytest.importorskip("torch")
    e, graphs = setup()
    with pytest.raises(TypeError, match="lattice.torch"):
        fn(torch.from_numpy(e), graphs)


def test_emissions_nested_list_accepted(fn):
    e, graphs = setup()
    a = score_of(fn(e.tolist(), graphs))
    b = score_of(fn(e, graphs))
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------
# graphs
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 3])
def test_number_of_graphs_must_match_batch(fn, n):
    e, _ = setup(B=2)
    graphs = [lattice.build("ctc", [1])] * n
    with pytest.raises(ValueError, match=r"graphs.*batch of 2|batch of 2.*graphs"):
        fn(e, graphs)


def test_graph_batch_of_wrong_size(fn):
    e, _ = setup(B=2)
    gb = lattice.batch([lattice.build("ctc", [1])] * 3)
    with pytest.raises(ValueError, match="graphs"):
        fn(e, gb)


def test_label_out_of_range(fn):
    e, _ = setup(B=3, C=4)
    graphs = [lattice.build("ctc", [1]), lattice.build("ctc", [1, 4]), lattice.build("ctc", [2])]
    with pytest.raises(ValueError, match=r"graph 1 .*label 4.*4 classes"):
        fn(e, graphs)


def test_label_out_of_range_past_length_still_rejected(fn):
    """A label >= C is an error even where lengths would keep the kernel from it."""
    e, _ = setup(B=1, C=3)
    with pytest.raises(ValueError, match="label"):
        fn(e, [lattice.build("segmentation", [1, 5])], [1])


def test_non_graph_in_list(fn):
    e, graphs = setup()
    with pytest.raises(TypeError, match=r"graphs\[1\]"):
        fn(e, [graphs[0], "ctc"])


def test_single_graph_is_broadcast(fn):
    e, _ = setup(B=3)
    g = lattice.build("ctc", [1, 2])
    a, b = fn(e, g), fn(e, [g, g, g])
    np.testing.assert_array_equal(score_of(a), score_of(b))
    assert score_of(a).shape == (3,)
    assert np.isfinite(score_of(a)).all()
    # and the scores differ per example, so each example used its own emissions
    assert len(set(score_of(a).tolist())) == 3


# --------------------------------------------------------------------------------
# lengths
# --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lengths", [[5], [5, 5, 5], [[5, 5]], np.zeros((2, 1), dtype=int)], ids=str
)
def test_lengths_wrong_shape(fn, lengths):
    e, graphs = setup(B=2, T=5)
    with pytest.raises(ValueError, match="lengths"):
        fn(e, graphs, lengths)


@pytest.mark.parametrize("lengths", [[-1, 5], [5, -3]])
def test_lengths_negative(fn, lengths):
    e, graphs = setup(B=2, T=5)
    with pytest.raises(ValueError, match="lengths"):
        fn(e, graphs, lengths)


@pytest.mark.parametrize("lengths", [[6, 5], [5, 100]])
def test_lengths_too_long(fn, lengths):
    e, graphs = setup(B=2, T=5)
    with pytest.raises(ValueError, match=r"lengths.*5"):
        fn(e, graphs, lengths)


@pytest.mark.parametrize(
    "lengths", [[5.0, 4.0], np.array([5, 4], dtype=np.float32), [True, True], ["5", "4"]],
    ids=["float", "float32", "bool", "str"],
)
def test_lengths_wrong_dtype(fn, lengths):
    e, graphs = setup(B=2, T=5)
    with pytest.raises(TypeError, match="lengths"):
        fn(e, graphs, lengths)


def test_lengths_any_integer_dtype(fn):
    e, graphs = setup(B=2, T=5)
    ref = score_of(fn(e, graphs, [5, 3]))
    for dtype in (np.int8, np.uint16, np.int32, np.uint64):
        got = score_of(fn(e, graphs, np.array([5, 3], dtype=dtype)))
        np.testing.assert_array_equal(got, ref)


def test_lengths_none_means_all_frames(fn):
    e, graphs = setup(B=2, T=5)
    np.testing.assert_array_equal(score_of(fn(e, graphs)), score_of(fn(e, graphs, [5, 5])))


def test_zero_length_scores_neg_inf(fn):
    e, graphs = setup(B=2, T=5)
    s = score_of(fn(e, graphs, [0, 5]))
    assert np.isneginf(s[0]) and np.isfinite(s[1])


# --------------------------------------------------------------------------------
# semiring
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("semiring", ["sum", "LOG", "tropical", "", None, 1, ["log"]])
def test_unknown_semiring(semiring):
    e, graphs = setup()
    with pytest.raises(ValueError, match="semiring") as info:
        lattice.forward(e, graphs, semiring=semiring)
    listed = str(info.value).split("available")[-1]
    assert "log" in listed and "max" in listed


def test_semiring_checked_before_anything_else():
    with pytest.raises(ValueError, match="semiring"):
        lattice.forward(np.zeros((1, 2, 3)), [lattice.build("ctc", [1])], semiring="plus")


# --------------------------------------------------------------------------------
# arc / start / final weights
# --------------------------------------------------------------------------------


def a_max(graphs):
    return lattice.batch(graphs).max_arcs


def s_max(graphs):
    return lattice.batch(graphs).max_states


@pytest.mark.parametrize(
    "shape_fn",
    [
        lambda B, T, A: (B, A + 1),
        lambda B, T, A: (B, A - 1),
        lambda B, T, A: (B + 1, A),
        lambda B, T, A: (A,),
        lambda B, T, A: (B, T + 1, A),
        lambda B, T, A: (B, T, A + 1),
        lambda B, T, A: (1, B, T, A),
    ],
    ids=["A+1", "A-1", "B+1", "1d", "T+1", "3d-A+1", "4d"],
)
def test_arc_weights_wrong_shape(fn, shape_fn):
    e, graphs = setup(B=2, T=5)
    shape = shape_fn(2, 5, a_max(graphs))
    with pytest.raises(ValueError, match="arc_weights"):
        fn(e, graphs, arc_weights=np.zeros(shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("time_dependent", [False, True])
def test_arc_weights_nan_or_pos_inf(fn, bad, time_dependent):
    e, graphs = setup(B=2, T=5)
    A = a_max(graphs)
    w = np.zeros((2, 5, A) if time_dependent else (2, A))
    w[(1, 2, 0) if time_dependent else (1, 0)] = bad
    with pytest.raises(ValueError, match=r"arc_weights.*(NaN|\+inf)"):
        fn(e, graphs, arc_weights=w)


def test_arc_weights_nan_in_padding_still_rejected(fn):
    """Even a NaN in a padded arc slot is a bad input."""
    e, graphs = setup(B=2, T=5)
    A = a_max(graphs)
    w = np.zeros((2, A))
    w[1, -1] = np.nan  # example 1 (segmentation, 3 arcs) is padded to A
    assert lattice.batch(graphs).num_arcs[1] < A
    with pytest.raises(ValueError, match="arc_weights"):
        fn(e, graphs, arc_weights=w)


def test_arc_weights_wrong_dtype(fn):
    e, graphs = setup(B=2, T=5)
    A = a_max(graphs)
    with pytest.raises(TypeError, match="arc_weights"):
        fn(e, graphs, arc_weights=np.full((2, A), "x"))
    with pytest.raises(TypeError, match="arc_weights"):
        fn(e, graphs, arc_weights=np.zeros((2, A), dtype=bool))


def test_arc_weights_neg_inf_allowed(fn):
    e, graphs = setup(B=2, T=5)
    A = a_max(graphs)
    s = score_of(fn(e, graphs, arc_weights=np.full((2, A), -np.inf)))
    assert np.isneginf(s).all()


@pytest.mark.parametrize("which", ["start_weights", "final_weights"])
@pytest.mark.parametrize(
    "shape_fn",
    [lambda B, S: (B, S + 1), lambda B, S: (B, S - 1), lambda B, S: (B + 1, S),
     lambda B, S: (S,), lambda B, S: (B, 1, S)],
    ids=["S+1", "S-1", "B+1", "1d", "3d"],
)
def test_start_final_weights_wrong_shape(fn, which, shape_fn):
    e, graphs = setup(B=2, T=5)
    shape = shape_fn(2, s_max(graphs))
    with pytest.raises(ValueError, match=which):
        fn(e, graphs, **{which: np.zeros(shape)})


@pytest.mark.parametrize("which", ["start_weights", "final_weights"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_start_final_weights_nan_or_pos_inf(fn, which, bad):
    e, graphs = setup(B=2, T=5)
    w = np.zeros((2, s_max(graphs)))
    w[0, 1] = bad
    with pytest.raises(ValueError, match=which):
        fn(e, graphs, **{which: w})


@pytest.mark.parametrize("which", ["start_weights", "final_weights"])
def test_start_final_weights_wrong_dtype(fn, which):
    e, graphs = setup(B=2, T=5)
    with pytest.raises(TypeError, match=which):
        fn(e, graphs, **{which: np.full((2, s_max(graphs)), "a")})


# --------------------------------------------------------------------------------
# NaN / +inf in emissions
# --------------------------------------------------------------------------------

# segmentation [0, 1] over 3 frames: paths (0, 0, 1) and (0, 1, 1).
# (frame, class) positions read by at least one path:
USED = [(0, 0), (1, 0), (1, 1), (2, 1)]


def nan_cases():
    """(description, emissions, graphs): a NaN sits where some path reads it."""
    seg = lattice.build("segmentation", [0, 1])
    for frame, cls in USED:
        e = np.zeros((1, 3, 3))
        e[0, frame, cls] = np.nan
        yield f"segmentation [0, 1], NaN at frame {frame} class {cls}", e, [seg]
    one = lattice.Graph([0], [], [], None, [0.0], [0.0])
    yield "one state, one frame, emission NaN", np.full((1, 1, 1), np.nan), [one]
    e, _ = setup(B=2, T=6, C=4)
    e = e.astype(np.float32)
    e[1, 3, 0] = np.nan  # a blank frame of example 1
    yield "ctc float32 batch, NaN on a blank frame", e, [
        lattice.build("ctc", [1, 2]),
        lattice.build("ctc", [3]),
    ]


def test_nan_in_emissions_at_used_position(fn):
    """Every case must raise FloatingPointError; the message lists the cases that did
    not (and what they returned instead)."""
    silent = []
    for what, e, graphs in nan_cases():
        try:
            result = fn(e, graphs)
        except FloatingPointError as exc:
            assert "NaN" in str(exc)
            continue
        silent.append(f"{what}: returned score {score_of(result).tolist()}")
    assert not silent, "NaN emissions silently accepted:\n" + "\n".join(silent)


def test_pos_inf_in_emissions_at_used_position(fn):
    """+inf where a path reads it: either an error or a +inf score, never a silent
    -inf or NaN."""
    g = lattice.build("segmentation", [0, 1])
    wrong = []
    for frame, cls in USED:
        e = np.zeros((1, 3, 3))
        e[0, frame, cls] = np.inf
        try:
            s = score_of(fn(e, [g]))
        except FloatingPointError:
            continue
        if not np.isposinf(s[0]):
            wrong.append(f"+inf at frame {frame} class {cls}: score {s.tolist()}")
    assert not wrong, "\n".join(wrong)


def test_nan_at_unused_positions_is_harmless(fn):
    """NaN in a class no state uses, and in frames past the length, is never read."""
    g = lattice.build("ctc", [1, 2])
    rng = np.random.default_rng(3)
    clean = rng.standard_normal((1, 6, 5))
    dirty = clean.copy()
    dirty[0, :, 4] = np.nan  # class 4: not in the graph
    dirty[0, 4:, :] = np.nan  # past the length
    a = fn(dirty, [g], [4])
    b = fn(clean, [g], [4])
    np.testing.assert_array_equal(score_of(a), score_of(b))
    assert np.isfinite(score_of(a)).all()
    if isinstance(a, lattice.ForwardBackward):
        np.testing.assert_array_equal(a.emission_grad, b.emission_grad)
        assert not np.isnan(a.emission_grad).any()


def test_neg_inf_emissions_are_not_an_error(fn):
    g = lattice.build("segmentation", [0, 1])
    e = np.full((1, 3, 2), -np.inf)
    assert np.isneginf(score_of(fn(e, [g]))).all()


# --------------------------------------------------------------------------------
# empty batches, zero frames
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_batch(fn, dtype):
    r = fn(np.zeros((0, 4, 3), dtype=dtype), [])
    s = score_of(r)
    assert s.shape == (0,) and s.dtype == dtype
    if isinstance(r, lattice.ForwardBackward):
        assert r.emission_grad.shape == (0, 4, 3)
    if isinstance(r, lattice.Alignment):
        assert r.states.shape == (0, 4)


def test_empty_batch_with_graph_batch_and_lengths(fn):
    s = score_of(fn(np.zeros((0, 4, 3)), lattice.batch([]), np.zeros(0, dtype=np.int64)))
    assert s.shape == (0,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_frames(fn, dtype):
    graphs = [lattice.build("ctc", [1]), lattice.build("segmentation", [2])]
    r = fn(np.zeros((2, 0, 3), dtype=dtype), graphs)
    s = score_of(r)
    assert s.shape == (2,) and s.dtype == dtype
    assert np.isneginf(s).all()
    if isinstance(r, lattice.ForwardBackward):
        assert r.emission_grad.shape == (2, 0, 3)
        assert np.all(r.arc_grad == 0) and np.all(r.start_grad == 0)
    if isinstance(r, lattice.Alignment):
        assert r.states.shape == (2, 0)
        assert r.num_segments.tolist() == [0, 0]


def test_zero_frames_with_lengths(fn):
    graphs = [lattice.build("ctc", [1])]
    assert np.isneginf(score_of(fn(np.zeros((1, 0, 2)), graphs, [0]))).all()
    with pytest.raises(ValueError, match="lengths"):
        fn(np.zeros((1, 0, 2)), graphs, [1])


def test_zero_classes(fn):
    """C = 0 with an empty graph is fine; any state would be a label error."""
    s = score_of(fn(np.zeros((1, 3, 0)), [lattice.Graph([], [], [], None, [], [])]))
    assert np.isneginf(s).all()
    with pytest.raises(ValueError, match="label"):
        fn(np.zeros((1, 3, 0)), [lattice.build("ctc", [])])


# --------------------------------------------------------------------------------
# sizes beyond int32: refused before anything is allocated, never wrapped
# --------------------------------------------------------------------------------

ONE_STATE = lattice.Graph([0], [0], [0], None, [0.0], [0.0])  # one state, a self-loop


@pytest.mark.parametrize("frames", [2**31, 2**31 + 5, 2**32 + 3])
def test_frames_beyond_int32_are_refused(fn, frames):
    """A zero-stride view of 2**32 + 3 frames costs no memory; it used to score -3
    (the frame count wrapped in the kernels) instead of -4294967299."""
    e = np.broadcast_to(np.full((1, 1, 2), -1.0), (1, frames, 2))
    with pytest.raises(ValueError, match=rf"{frames} frames.*int32.*2147483647"):
        fn(e, [ONE_STATE])


def test_frames_beyond_int32_are_refused_through_torch():
    torch = pytest.importorskip("torch")
    from lattice.torch import lattice_score

    e = torch.full((1, 1, 2), -1.0, dtype=torch.float64).expand(1, 2**32 + 3, 2)
    with pytest.raises(ValueError, match=r"4294967299 frames.*int32"):
        lattice_score(e, [ONE_STATE])


def test_classes_beyond_int32_are_refused(fn):
    e = np.broadcast_to(np.zeros((1, 1, 1)), (1, 2, 2**31))
    with pytest.raises(ValueError, match=r"2147483648 classes.*int32"):
        fn(e, [ONE_STATE])


def test_frames_at_the_limit_are_not_refused_by_the_size_check():
    # the check refuses only what int32 cannot hold: lengths shorter than T are used
    e = np.broadcast_to(np.full((1, 1, 1), -1.0), (1, 2**31 - 1, 1))
    assert lattice.forward(e, [ONE_STATE], lengths=[3])[0] == -3.0


def test_workspaces_beyond_int32_are_refused_before_allocating():
    """The kernels index workspace rows with C ints: a row int32 cannot index is a
    clear ValueError, not a wrapped offset (the stored alpha table and the
    backpointers are int64-indexed and exempt)."""
    from lattice.backends import cpu

    fits = cpu._fits_int32
    assert fits("forward_backward", S=2**27, A=10, K=0)
    assert not fits("forward_backward", S=2**29, A=10, K=0)  # A + 4 S > INT32_MAX
    assert not fits("forward", S=10, A=2**31 - 1, K=0)  # A + 2 S
    assert fits("viterbi_banded", S=2**29, A=0, K=0)  # its bp table is int64-indexed
    gb = lattice.batch([lattice.build("ctc", [1])])
    problem = lattice.problem.make_problem(np.zeros((1, 3, 2)), gb, None, None, None, None)[1]
    run = cpu._Run.of(problem, {"serial_work": 0, "workspace_cache": 0})
    real = cpu.WORKSPACES["forward"]
    try:  # a workspace row of 2**31 values is refused before numpy allocates it
        cpu.WORKSPACES["forward"] = lambda S, A, K, table: {"work": ("float", 2**31)}
        with pytest.raises(ValueError, match=r"too large.*int32"):
            run.workspaces("forward")
    finally:
        cpu.WORKSPACES["forward"] = real


def test_ell_layout_is_off_when_its_workspace_would_not_fit_int32():
    cpu = lattice.backends.get_backend("cpu")

    class Big:  # what ell_cap reads of a batch
        max_in_degree = max_out_degree = 3
        max_arcs = 10

        def __init__(self, max_states):
            self.max_states = max_states

    assert cpu.ell_cap(Big(1000)) == 3
    limit = (2**31 - 1 - 2) // (2 * 3 + 2)  # 2 K S + 2 S + BAND_PAD <= INT32_MAX
    assert cpu.ell_cap(Big(limit)) == 3
    assert cpu.ell_cap(Big(limit + 1)) == 0


def test_band_tables_beyond_int32_are_not_banded():
    """A band table of D * S_max + D - 1 entries is indexed with C ints in the banded
    kernels; a batch whose table int32 cannot index runs on the general ones."""
    from lattice.batch import _band_fits

    limit = (2**31 - 1 - 2) // 3  # 3 S + 2 <= INT32_MAX
    assert _band_fits(3, limit) and not _band_fits(3, limit + 1)
    assert _band_fits(2, (2**31 - 2) // 2) and not _band_fits(2, (2**31 - 2) // 2 + 1)


# --------------------------------------------------------------------------------
# scores that overflow: the message says what happened
# --------------------------------------------------------------------------------


def test_overflow_of_finite_float32_emissions_is_named(fn):
    e = np.full((1, 5, 3), 3e38, dtype=np.float32)
    with pytest.raises(FloatingPointError, match=r"overflowed float32.*finite.*float64"):
        fn(e, [lattice.build("ctc", [1, 2])])


def test_overflow_of_a_finite_arc_weight_is_named(fn):
    g = lattice.build("ctc", [1, 2])
    with pytest.raises(FloatingPointError, match=r"overflowed float64.*log-weights up to 1e\+308"):
        fn(np.zeros((1, 5, 3)), [g], arc_weights=np.full((1, g.num_arcs), 1e308))


def test_nan_message_names_the_frame_and_class(fn):
    e = np.zeros((1, 5, 3))
    e[0, 2, 1] = np.nan
    with pytest.raises(FloatingPointError, match=r"NaN at frame 2, class 1"):
        fn(e, [lattice.build("segmentation", [1, 2])])


def test_csr_order_of_enormous_graphs_does_not_overflow():
    """The one-key sort of the CSR index would overflow int64 for graphs of about
    2**31 states; the lexsort that replaces it orders arcs identically."""
    from lattice.batch import _csr_order

    rng = np.random.default_rng(0)
    example = np.repeat(np.arange(3), 40).astype(np.int64)
    ends = rng.integers(0, 5, 120).astype(np.int64)
    key = -rng.integers(0, 5, 120).astype(np.int64)
    small = _csr_order(example, ends, key, 3, 5)
    huge = _csr_order(example, ends, key, 3, 2**31 - 1)  # the lexsort branch
    assert np.array_equal(small, huge)
    assert np.array_equal(small, np.lexsort((np.arange(120), key, ends, example)))

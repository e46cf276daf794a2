"""The GPU backend's kernels, run on the CPU by the host emulation
(tests/cuda_emulation), against the CPU engine: scores, gradients and paths on
random graphs, CTC, segmentation, variable lengths, weight overrides (per frame
too), shared graphs and strided emissions. ``pytest -m cuda_emulation`` runs these.

The CPU engine is the reference: float64 results within 1e-12, float32 results
within float32 rounding of the same float64 recursion, Viterbi paths bit for bit
(the max-semiring kernels add the same numbers in the same order, ties included).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lattice
from lattice.backends import register_backend, unregister_backend
from lattice.backends.cuda_source import KERNELS, cuda_source, kernel_arguments
from lattice.backends.cupy import CuPyBackend, class_map
from lattice.problem import make_problem

from cuda_emulation.runtime import EmulatedRuntime, compiler
from strategies import examples, problems

pytestmark = [
    pytest.mark.cuda_emulation,
    pytest.mark.skipif(compiler() is None, reason="no C++ compiler for the emulation"),
]


@pytest.fixture(scope="module", params=["band", "csr"])
def gpu(request):
    """The GPU backend on the emulation: banded batches on the band kernels, or
    every batch on the CSR ones."""
    return CuPyBackend(EmulatedRuntime(threads=3), banded=request.param == "band")


def assert_close(got, want, dtype):
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


def compare(gpu, emissions, graphs, lengths=None, **overrides):
    """Every result of the GPU kernels against the CPU engine's on one problem."""
    cpu, p = make_problem(emissions, graphs, lengths, overrides.get("arc_weights"),
                          overrides.get("start_weights"), overrides.get("final_weights"))
    dtype = p.emissions.dtype
    for semiring in ("log", "max"):
        assert_close(gpu.forward(p, semiring), cpu.forward(p, semiring), dtype)
    want, got = cpu.forward_backward(p), gpu.forward_backward(p)
    for name, w, g in zip(want._fields, want, got):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        assert_close(g, w, dtype)
    want, got = cpu.forward_backward(p, "max"), gpu.forward_backward(p, "max")
    for name, w, g in zip(want._fields, want, got):
        np.testing.assert_array_equal(g, w, err_msg=name)
    want, got = cpu.viterbi(p), gpu.viterbi(p)
    for name, w, g in zip(want._fields, want, got):
        assert g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)


@examples(60)
@given(problems(max_batch=4, max_frames=6, max_states=6, max_arcs=12))
def test_random_graphs_equal_the_cpu_engine(gpu, problem):
    compare(gpu, problem.emissions, problem.graphs, **problem.kwargs())


@examples(15)
@given(problems(max_batch=3, max_frames=5, overrides=False), st.booleans())
def test_random_graphs_in_float32(gpu, problem, shared):
    graphs = [problem.graphs[0]] * len(problem.graphs) if shared else problem.graphs
    compare(gpu, problem.emissions.astype(np.float32), graphs, problem.lengths)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ctc_with_variable_lengths(gpu, dtype):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 30, 6))
    em = (logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)).astype(dtype)
    graphs = [lattice.build("ctc", t) for t in ([1, 2, 3], [4, 4, 4], [5], [])]
    compare(gpu, em, graphs, [30, 17, 3, 11])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_segmentation_and_hmm_chains(gpu, dtype):
    rng = np.random.default_rng(2)
    em = rng.standard_normal((3, 20, 5)).astype(dtype)
    graphs = [lattice.build("segmentation", [1, 2, 3]),
              lattice.build("hmm", [1, 2], states=2, min_frames=2, max_frames=4),
              lattice.build("segmentation", [4])]
    compare(gpu, em, graphs, [20, 12, 7])


def test_time_dependent_and_per_example_weights(gpu):
    rng = np.random.default_rng(3)
    graphs = [lattice.build("ctc", [1, 2]), lattice.build("segmentation", [3, 1, 2])]
    gb = lattice.batch(graphs)
    em = rng.standard_normal((2, 9, 4))
    arc = rng.standard_normal((2, 9, gb.max_arcs))
    arc[0, :, 1] = -np.inf
    start = np.where(np.isfinite(gb.start), rng.standard_normal(gb.start.shape), -np.inf)
    final = np.where(np.isfinite(gb.final), rng.standard_normal(gb.final.shape), -np.inf)
    compare(gpu, em, graphs, arc_weights=arc, start_weights=start, final_weights=final)
    compare(gpu, em, graphs, arc_weights=arc[:, 0])


def test_no_path_zero_lengths_and_empty_graphs(gpu):
    em = np.zeros((4, 3, 3))
    graphs = [lattice.build("ctc", [1, 1, 1]),  # needs 5 frames: no path in 3
              lattice.build("ctc", [1]),
              lattice.Graph([], [], [], None, [], []),
              lattice.build("segmentation", [2])]
    compare(gpu, em, graphs, [3, 0, 3, 3])
    scores = gpu.forward_backward(make_problem(em, graphs, [3, 0, 3, 3], None, None,
                                               None)[1]).score
    assert np.isneginf(scores[:3]).all() and np.isfinite(scores[3])


def test_shared_graphs_and_strided_emissions(gpu):
    rng = np.random.default_rng(4)
    den = lattice.build("ctc", [1, 2, 3, 1])
    graphs = [den, lattice.build("ctc", [2]), den, den]
    em = rng.standard_normal((12, 4, 5)).transpose(1, 0, 2)  # (B, T, C) of a (T, B, C)
    gb = lattice.batch(graphs)
    assert len(gb.distinct) == 2
    compare(gpu, em, gb, [12, 5, 9, 12])
    compare(gpu, em[:, ::-2], lattice.batch([den] * 4))


@pytest.mark.parametrize("checkpoint", [1, 2, 3, 5, True])
def test_checkpoints_give_the_same_bits(gpu, checkpoint):
    rng = np.random.default_rng(12)
    em = rng.standard_normal((3, 17, 5))
    graphs = [lattice.build("ctc", [1, 2, 3]), lattice.build("segmentation", [4, 1]),
              lattice.build("hmm", [2], states=2)]
    gb = lattice.batch(graphs)
    for arcs in (None, rng.standard_normal((3, 17, gb.max_arcs))):
        _, p = make_problem(em, gb, [17, 11, 6], arcs, None, None)
        full = gpu.forward_backward(p, checkpoint=False)
        part = gpu.forward_backward(p, checkpoint=checkpoint)
        for a, b in zip(full, part):
            assert a.tobytes() == b.tobytes()


def test_the_memory_budget_turns_checkpoints_on():
    from lattice.memory import memory_budget

    backend = CuPyBackend(EmulatedRuntime())
    _, p = make_problem(np.zeros((2, 40, 4)), lattice.build("ctc", [1, 2]), None, None,
                        None, None)
    assert backend.alpha_rows(p, None) == (40, (1 + 40) * 5)  # the full table
    with memory_budget(100):
        k, rows = backend.alpha_rows(p, None)
    assert k < 40 and rows == (-(-40 // k) + k) * 5
    assert backend.alpha_rows(p, 4) == (4, (10 + 4) * 5)


def test_banded_batches_run_the_band_kernels():
    em = np.zeros((2, 6, 4))
    for graphs, layout in (([lattice.build("ctc", [1, 2]), lattice.build("hmm", [3])],
                            "band"),
                           ([lattice.Graph([1, 2, 3], [0, 1, 2, 2], [1, 2, 0, 2], None,
                                           [0, -np.inf, -np.inf], [-np.inf, -np.inf, 0])],
                            "csr")):  # an arc back from 2 to 0: not banded
        backend = CuPyBackend(EmulatedRuntime())
        _, p = make_problem(em[: len(graphs)], graphs, None, None, None, None)
        backend.forward_backward(p)
        backend.viterbi(p)
        backend.forward(p, "max")
        entries = [entry for entry, _, _ in backend.runtime.launches]
        assert entries == [f"lt_forward_backward_{layout}_f64", f"lt_viterbi_{layout}_f64",
                           f"lt_forward_max_{layout}_f64"]


def test_results_are_deterministic(gpu):
    rng = np.random.default_rng(5)
    em = rng.standard_normal((3, 40, 8))
    graphs = [lattice.build("ctc", rng.integers(1, 8, size=6)) for _ in range(3)]
    _, p = make_problem(em, graphs, None, None, None, None)
    first, second = gpu.forward_backward(p), gpu.forward_backward(p)
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("threads", [1, 2, 7])
def test_thread_counts_give_the_same_bits(threads):
    rng = np.random.default_rng(6)
    em = rng.standard_normal((2, 15, 6))
    graphs = [lattice.build("ctc", [1, 2, 3, 4]), lattice.build("segmentation", [5, 1])]
    _, p = make_problem(em, graphs, None, None, None, None)
    reference = CuPyBackend(EmulatedRuntime(threads=3)).forward_backward(p)
    got = CuPyBackend(EmulatedRuntime(threads=threads)).forward_backward(p)
    for a, b in zip(reference, got):
        assert a.tobytes() == b.tobytes()


def test_the_engine_dispatches_to_the_backend():
    """lattice.forward / forward_backward / viterbi through the GPU backend (here
    registered for numpy arrays, as it is for CuPy's), with the engine's checks."""
    emulated = CuPyBackend(EmulatedRuntime())
    register_backend("emulated-gpu", emulated, ["numpy"])
    try:
        assert lattice.backends.backend_for(np.zeros(1)) is emulated
        em = np.log(np.array([[[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .1, .8]]]))
        graph = lattice.build("ctc", [1, 2])
        assert lattice.viterbi(em, [graph]).segments(0) == [(0, 0, 2), (1, 3, 4)]
        fb = lattice.forward_backward(em, graph)
        np.testing.assert_allclose(fb.emission_grad.sum(axis=-1), 1.0, rtol=1e-12)
        H = lattice.entropy(em, graph)  # the distribution: on the CPU, and back
        unregister_backend("emulated-gpu")
        np.testing.assert_array_equal(H, lattice.entropy(em, graph))
        register_backend("emulated-gpu", emulated, ["numpy"])
        bad = em.copy()
        bad[0, 1, 1] = np.nan
        with pytest.raises(FloatingPointError, match="frame 1, class 1"):
            lattice.forward(bad, graph)
        launched = {entry for entry, _, _ in emulated.runtime.launches}
        assert {"lt_viterbi_band_f64", "lt_forward_backward_band_f64",
                "lt_forward_log_band_f64"} <= launched
    finally:
        unregister_backend("emulated-gpu")
    assert lattice.backends.backend_for(np.zeros(1)).name == "cpu"


def test_the_alignment_distribution_runs_on_the_cpu_and_comes_back(gpu):
    rng = np.random.default_rng(8)
    em = rng.standard_normal((3, 12, 5))
    graphs = [lattice.build("ctc", [1, 2]), lattice.build("segmentation", [3, 4, 1]),
              lattice.build("ctc", [2, 2])]
    cpu, p = make_problem(em, graphs, [12, 9, 7], None, None, None)
    pairs = [(gpu.sample(p, 4, 123), cpu.sample(p, 4, 123)),
             (gpu.kbest(p, 3), cpu.kbest(p, 3)),
             (gpu.posteriors(p, True, True, 3), cpu.posteriors(p, True, True, 3))]
    for got, want in pairs:
        assert type(got) is type(want)
        for name, g, w in zip(want._fields, got, want):
            if w is None:
                assert g is None, name
            else:
                np.testing.assert_array_equal(g, w, err_msg=name)


def test_class_map():
    num_states = np.array([4, 2, 0], np.int32)
    labels = np.array([[3, 1, 3, 0], [2, 2, 0, 0], [0, 0, 0, 0]], np.int32)
    n, classes, ptr, states = class_map(num_states, labels, 4)
    assert n.tolist() == [3, 1, 0]
    assert classes[0, :3].tolist() == [0, 1, 3] and classes[1, :1].tolist() == [2]
    assert ptr[0, :4].tolist() == [0, 1, 2, 4] and ptr[1, :2].tolist() == [0, 2]
    assert states[0].tolist() == [3, 1, 0, 2] and states[1, :2].tolist() == [0, 1]


def test_launches_are_typed():
    values = dict(B=2, lengths=np.zeros(2, np.int64), path=np.zeros(1, np.int32),
                  path_labels=np.zeros(1, np.int32), path_arcs=np.zeros(1, np.int32),
                  p_bs=1, ls=1, g_em=np.zeros(1, np.float32), g_bs=1, g_ts=1,
                  g_arc=np.zeros(1, np.float32), ga_bs=1, ga_ts=0,
                  g_start=np.zeros(1, np.float32), g_final=np.zeros(1, np.float32))
    kernel_arguments("best_path_gradients", np.float32, values)
    with pytest.raises(KeyError, match="no GPU kernel named 'forward'"):
        from lattice.backends.cuda_source import entry_name
        entry_name("forward", np.float32)
    with pytest.raises(ValueError, match="g_em must be an array of float64, got float32"):
        kernel_arguments("best_path_gradients", np.float64, values)
    with pytest.raises(ValueError, match="ls = 2147483648 does not fit i32"):
        kernel_arguments("best_path_gradients", np.float32, {**values, "ls": 2**31})
    with pytest.raises(ValueError, match="'B' is missing"):
        kernel_arguments("best_path_gradients", np.float32,
                         {k: v for k, v in values.items() if k != "B"})
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['extra'\]"):
        kernel_arguments("best_path_gradients", np.float32, {**values, "extra": 1})
    with pytest.raises(ValueError, match="lengths must be an array of int64"):
        kernel_arguments("best_path_gradients", np.float32,
                         {**values, "lengths": [0, 0]})


def test_every_kernel_has_an_entry_point_per_dtype():
    source = cuda_source()
    for kernel in KERNELS:
        for suffix in ("f32", "f64"):
            assert f'extern "C" __global__ void lt_{kernel}_{suffix}(' in source

"""``lattice.torch`` under ``torch.compile``, ``torch.jit.trace`` and ``torch.func``.

The engine runs inside ``torch.library`` ops (``lattice::graph_score``,
``lattice::ctc_score``, ``lattice::sequence_score``) with fake implementations, so
``torch.compile(..., fullgraph=True)`` traces every loss and ``lattice_score`` without
a graph break and gives the same losses and gradients as eager mode. Most tests use
the ``eager`` and ``aot_eager`` backends (dynamo, and dynamo + AOTAutograd with the
fake implementations); one runs the default backend (inductor) in a fresh process
and checks that nothing is printed.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lattice  # noqa: E402
from lattice.torch import (  # noqa: E402
    CTCLoss,
    LatticeValueError,
    SegmentationLoss,
    ViterbiLoss,
    ctc_loss,
    lattice_score,
)

BACKENDS = ["eager", "aot_eager"]
TOL = dict(rtol=1e-12, atol=1e-12)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors (see the note in test_torch_ops.py)
    yield
    torch.set_num_threads(before)
    torch._dynamo.reset()


def _eager_and_compiled(fn, inputs, backend, **compile_options):
    """(value, gradients) of ``fn(*inputs).sum()`` in eager mode and compiled."""
    results = []
    for f in (fn, torch.compile(fn, backend=backend, fullgraph=True, **compile_options)):
        xs = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
        out = f(*xs)
        out.sum().backward()
        results.append((out.detach(), [x.grad for x in xs]))
    return results


def _assert_same(results):
    (value, grads), (compiled_value, compiled_grads) = results
    torch.testing.assert_close(compiled_value, value, **TOL)
    for g, cg in zip(grads, compiled_grads):
        if g is None:
            assert cg is None
        else:
            torch.testing.assert_close(cg, g, **TOL)


def _ctc_problem(seed=0, T=12, B=3, C=6):
    gen = torch.Generator().manual_seed(seed)
    lp = torch.randn(T, B, C, dtype=torch.float64, generator=gen).log_softmax(-1)
    targets = torch.tensor([[1, 2, 2], [3, 4, 0], [5, 0, 0]])[:B]
    lengths, target_lengths = torch.tensor([12, 9, 5])[:B], torch.tensor([3, 2, 1])[:B]
    return lp.requires_grad_(), targets, lengths, target_lengths


@pytest.mark.parametrize("backend, reduction, zero_infinity", [
    ("eager", "mean", False), ("aot_eager", "mean", False), ("aot_eager", "sum", True),
    ("aot_eager", "none", True), ("aot_eager", "mean", True), ("aot_eager", "none", False),
])
def test_ctc_loss(backend, reduction, zero_infinity):
    lp, targets, il, tl = _ctc_problem()
    if zero_infinity:  # with an impossible target: 5 5 5 needs 5 frames, it gets 4
        targets = torch.tensor([[1, 2, 2], [3, 4, 0], [5, 5, 5]])
        il, tl = torch.tensor([12, 9, 4]), torch.tensor([3, 2, 3])

    def loss(x):
        return ctc_loss(x, targets, il, tl, reduction=reduction, zero_infinity=zero_infinity)

    _assert_same(_eager_and_compiled(loss, [lp], backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctc_loss_layouts_and_module(backend):
    lp, targets, il, tl = _ctc_problem(1)
    concatenated = torch.cat([targets[b, : tl[b]] for b in range(3)])
    module = CTCLoss(blank=0, reduction="sum")
    for fn in (
        lambda x: ctc_loss(x, concatenated, il, tl),
        lambda x: ctc_loss(x, targets, (12, 9, 5), (3, 2, 1)),
        lambda x: ctc_loss(x[:, 0], targets[0], (12,), (3,), reduction="none"),
        lambda x: module(x, targets, il, tl),
        lambda x: ctc_loss(x.float(), targets, il, tl).double(),
    ):
        torch._dynamo.reset()
        _assert_same(_eager_and_compiled(fn, [lp], backend))


@pytest.mark.parametrize("make", [lambda: ViterbiLoss(), lambda: SegmentationLoss(),
                                  lambda: ViterbiLoss("segmentation", reduction="sum"),
                                  lambda: SegmentationLoss(min_frames=2, reduction="none")])
def test_viterbi_and_segmentation_losses(make, backend="aot_eager"):
    lp, targets, il, tl = _ctc_problem(2)
    criterion = make()
    _assert_same(_eager_and_compiled(lambda x: criterion(x, targets, il, tl), [lp], backend))


def _graph_problem(seed=3):
    rng = np.random.default_rng(seed)
    gb = lattice.batch([lattice.build("ctc", [1, 2]), lattice.build("segmentation", [2, 1]),
                        lattice.build("hmm", [3], states=2)])
    B, T, C = len(gb), 8, 4
    em = torch.from_numpy(rng.normal(size=(B, T, C))).requires_grad_()
    arcs = torch.from_numpy(rng.normal(size=(B, gb.max_arcs)) * 0.1).requires_grad_()
    timed = torch.from_numpy(rng.normal(size=(B, T, gb.max_arcs)) * 0.1).requires_grad_()
    starts = torch.zeros(B, gb.max_states, dtype=torch.float64, requires_grad=True)
    finals = torch.from_numpy(rng.normal(size=(B, gb.max_states)) * 0.1).requires_grad_()
    frames = torch.from_numpy(rng.uniform(0.5, 1.5, size=(B, T))).requires_grad_()
    return gb, em, arcs, timed, starts, finals, frames


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("semiring", ["log", "max"])
def test_lattice_score(backend, semiring):
    gb, em, arcs, timed, starts, finals, frames = _graph_problem()
    lengths = [8, 6, 7]
    one = lattice.build("ctc", [1, 2])  # graphs are built outside the compiled code
    cases = [
        (lambda e: lattice_score(e, gb, semiring=semiring), [em]),
        (lambda e, a, s, f: lattice_score(e, gb, lengths, semiring, arc_weights=a,
                                          start_weights=s, final_weights=f),
         [em, arcs, starts, finals]),
        (lambda e, a, w: lattice_score(e, gb, torch.tensor(lengths), semiring,
                                       frame_weights=w, arc_weights=a),
         [em, timed, frames]),
        (lambda e, s: lattice_score(e, gb, semiring=semiring, start_weights=s,
                                    final_weights=s),  # one tensor twice
         [em, starts]),
        (lambda e: lattice_score(e, one, semiring=semiring), [em]),  # one Graph for all
    ]
    for fn, inputs in cases:
        torch._dynamo.reset()
        _assert_same(_eager_and_compiled(fn, inputs, backend))


def test_another_graph_batch_recompiles():
    """The packed graph is a constant of the compiled code, guarded on the batch."""
    gb, em, *_ = _graph_problem()
    other = lattice.batch([lattice.build("ctc", [2, 1]), lattice.build("ctc", [3]),
                           lattice.build("segmentation", [1, 2, 3])])
    compiled = torch.compile(lambda e, g: lattice_score(e, g), backend="eager",
                             fullgraph=True)
    for graphs in (gb, other, gb):
        torch.testing.assert_close(compiled(em, graphs), lattice_score(em, graphs), **TOL)


def test_a_list_of_graphs_needs_a_graph_batch_under_fullgraph():
    gb, em, *_ = _graph_problem()
    graphs = list(gb.graphs)
    with pytest.raises(Exception, match="GraphBatch"):
        torch.compile(lambda e: lattice_score(e, graphs), backend="eager",
                      fullgraph=True)(em)
    # without fullgraph it runs (a graph break), with the same result
    out = torch.compile(lambda e: lattice_score(e, graphs), backend="eager")(em)
    torch.testing.assert_close(out, lattice_score(em, gb), **TOL)


def test_dynamic_shapes(backend="aot_eager"):
    compiled = torch.compile(lambda x, t, il, tl: ctc_loss(x, t, il, tl, reduction="sum"),
                             backend=backend, fullgraph=True, dynamic=True)
    for T, B in ((12, 3), (10, 2), (12, 1)):
        lp, targets, il, tl = _ctc_problem(4, T=T, B=B)
        il = il.clamp(max=T)
        x = lp.detach().clone().requires_grad_()
        compiled(x, targets, il, tl).backward()
        y = lp.detach().clone().requires_grad_()
        ctc_loss(y, targets, il, tl, reduction="sum").backward()
        torch.testing.assert_close(x.grad, y.grad, **TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_values_raise_inside_compiled_code(backend):
    lp, targets, il, tl = _ctc_problem()
    compiled = torch.compile(lambda x, il: ctc_loss(x, targets, il, tl), backend=backend,
                             fullgraph=True)
    with pytest.raises(LatticeValueError, match="input_lengths must lie in"):
        compiled(lp, torch.tensor([13, 9, 5]))
    gb, em, *_ = _graph_problem()
    bad = em.detach().clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError):
        torch.compile(lambda e: lattice_score(e, gb), backend=backend, fullgraph=True)(bad)


def test_double_backward_still_refused_when_compiled():
    lp, targets, il, tl = _ctc_problem()
    out = torch.compile(lambda x: ctc_loss(x, targets, il, tl), backend="aot_eager",
                        fullgraph=True)(lp)
    with pytest.raises(RuntimeError):
        (grad,) = torch.autograd.grad(out, lp, create_graph=True)
        grad.sum().backward()


def test_no_grad_under_compile_skips_the_gradients():
    gb, em, *_ = _graph_problem()
    compiled = torch.compile(lambda e: lattice_score(e, gb), backend="aot_eager",
                             fullgraph=True)
    with torch.no_grad():
        out = compiled(em)
    assert not out.requires_grad
    torch.testing.assert_close(out, lattice_score(em.detach(), gb), **TOL)


def test_ops_pass_torch_library_opcheck():
    """Schema, fake implementations and AOT dispatch agree with the real ops."""
    lp, targets, il, tl = _ctc_problem()
    em = lp.detach().transpose(0, 1)
    gb, score_em, arcs, *_ = _graph_problem()
    from lattice._torch_ops import pack_graphs

    samples = [
        (torch.ops.lattice.ctc_score.default, (em, targets, il, tl, 0, True, "propagate")),
        (torch.ops.lattice.sequence_score.default,
         (em, targets, il, tl, "segmentation", '{"min_frames": 1}', "log", False, "raise")),
        (torch.ops.lattice.graph_score.default,
         (score_em.detach(), None, arcs.detach(), None, None, pack_graphs(gb), False,
          torch.tensor([8, 6, 7]), "max", True, "raise")),
        # checkpoints every 3 frames (issue 18)
        (torch.ops.lattice.ctc_score.default,
         (em, targets, il, tl, 0, True, "propagate", 3)),
        (torch.ops.lattice.graph_score.default,
         (score_em.detach(), None, arcs.detach(), None, None, pack_graphs(gb), False,
          None, "log", True, "raise", -2)),
    ]
    for op, args in samples:
        torch.library.opcheck(op, args)


def test_graph_score_op_validates_the_graph_it_is_given():
    """The op is public (torch.ops.lattice.graph_score): a malformed packed graph,
    or one whose arrays break the graph rules, is refused, never read blindly."""
    from lattice._torch_ops import pack_graphs

    gb, em, *_ = _graph_problem()
    op = torch.ops.lattice.graph_score.default

    def call(graph):
        return op(em.detach(), None, None, None, None, graph, False, None, "log", False,
                  "raise")

    packed = pack_graphs(gb)
    torch.testing.assert_close(call(packed)[0], lattice_score(em, gb), **TOL)
    for bad in (packed[:-1], torch.zeros(30, dtype=torch.uint8), packed.to(torch.int32)):
        with pytest.raises(LatticeValueError, match="pack_graphs"):
            call(bad)
    broken = packed.clone()
    # after the header of four int64, the float64 arrays and num_states, num_arcs
    labels_at = 32 + 8 * (2 * len(gb) * gb.max_states + len(gb) * gb.max_arcs) + 8 * len(gb)
    broken[labels_at : labels_at + 4] = 255  # the first label becomes -1
    with pytest.raises(LatticeValueError, match="labels of example 0 holds a negative"):
        call(broken)


# ----------------------------------------------------------------------------------
# torch.jit.trace and torch.func
# ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")
def test_jit_trace_gives_the_eager_losses_and_gradients():
    lp, targets, il, tl = _ctc_problem()
    gb, em, *_ = _graph_problem()
    for fn, x in ((lambda x: ctc_loss(x, targets, il, tl), lp),
                  (lambda e: lattice_score(e, gb).sum(), em),
                  (lambda x: ViterbiLoss()(x, targets, il, tl), lp)):
        for example in (x, x.detach()):  # traced with and without grad
            traced = torch.jit.trace(fn, (example,))
            a, b = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
            out, ref = traced(a), fn(b)
            torch.testing.assert_close(out, ref, **TOL)
            out.backward()
            ref.backward()
            torch.testing.assert_close(a.grad, b.grad, **TOL)


def test_torch_func_transforms_are_refused_clearly():
    lp, targets, il, tl = _ctc_problem()
    with pytest.raises(RuntimeError, match="functorch transforms"):
        torch.func.grad(lambda x: ctc_loss(x, targets, il, tl))(lp.detach())
    gb, em, *_ = _graph_problem()
    with pytest.raises(RuntimeError, match="functorch transforms"):
        torch.func.grad(lambda e: lattice_score(e, gb).sum())(em.detach())


# ----------------------------------------------------------------------------------
# the default backend, in a fresh process: same numbers, nothing printed
# ----------------------------------------------------------------------------------


_INDUCTOR_SCRIPT = textwrap.dedent(
    """
    import torch, lattice
    from lattice.torch import ctc_loss, lattice_score, ViterbiLoss
    torch.manual_seed(0)
    lp = torch.randn(12, 3, 6).log_softmax(-1)
    targets, il, tl = torch.tensor([[1, 2, 2], [3, 4, 0], [5, 0, 0]]), torch.tensor([12, 9, 5]), torch.tensor([3, 2, 1])
    gb = lattice.batch([lattice.build("ctc", [1, 2]), lattice.build("segmentation", [2, 1]), lattice.build("ctc", [3])])
    em = torch.randn(3, 8, 4)
    arcs = torch.zeros(3, gb.max_arcs)
    viterbi = ViterbiLoss()
    fns = [
        (lambda x: ctc_loss(x, targets, il, tl) + viterbi(x, targets, il, tl), lp),
        (lambda e, a: lattice_score(e, gb, arc_weights=a).sum()
         + lattice_score(e, gb, semiring="max", arc_weights=a).sum(), em, arcs),
    ]
    for fn, *inputs in fns:
        outs = []
        for f in (fn, torch.compile(fn, fullgraph=True)):
            xs = [x.detach().clone().requires_grad_() for x in inputs]
            out = f(*xs)
            out.backward()
            outs.append([out.detach()] + [x.grad for x in xs])
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    """
)


@pytest.mark.slow
def test_default_backend_in_a_fresh_process_prints_nothing(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCHINDUCTOR_CACHE_DIR=str(tmp_path))
    # cwd outside the repository: `python -c` puts the working directory first on
    # sys.path, where the source folder (without the built extension) would shadow
    # the installed package
    run = subprocess.run([sys.executable, "-c", _INDUCTOR_SCRIPT], capture_output=True,
                         text=True, env=env, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == ""

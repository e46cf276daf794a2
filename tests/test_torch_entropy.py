"""``lattice.torch.alignment_entropy``: values, gradients (gradcheck in float64 against
finite differences of the op itself, and against the brute-force entropy), frame
weights, NaN policy, half inputs and ``torch.compile``."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lattice  # noqa: E402
from lattice.torch import alignment_entropy  # noqa: E402
from reference import brute_force  # noqa: E402

NEG_INF = -math.inf


def _graphs():
    """A cyclic graph with parallel arcs and a -inf start, and a CTC graph."""
    cyclic = lattice.Graph([0, 1, 2, 1], [0, 0, 1, 1, 2, 3, 3, 2, 1, 1],
                           [0, 1, 1, 2, 3, 3, 0, 2, 1, 2], None,
                           [0, -1, NEG_INF, 0.5], [0.2, 0, 0.1, 0])  # fmt: skip
    return [cyclic, lattice.build("ctc", [1, 2])]


def _brute_entropy(graph, emissions, length, arc_weights=None, start=None, final=None):
    ref = brute_force(graph, emissions, length, arc_weights, start, final)
    if ref.log_z == NEG_INF:
        return 0.0
    probs = [math.exp(p.score - ref.log_z) for p in ref.paths if p.score > NEG_INF]
    return -math.fsum(q * math.log(q) for q in probs if q > 0)


def _inputs(seed, time_dependent=False):
    rng = np.random.default_rng(seed)
    graphs = _graphs()
    gb = lattice.batch(graphs)
    B, T, C = 2, 5, 3
    em = torch.tensor(rng.normal(size=(B, T, C)), requires_grad=True)
    fw = torch.tensor(rng.uniform(0.5, 1.5, size=(B, T)), requires_grad=True)
    shape = (B, T, gb.max_arcs) if time_dependent else (B, gb.max_arcs)
    aw = torch.tensor(rng.normal(size=shape), requires_grad=True)
    sw = torch.tensor(rng.normal(size=(B, gb.max_states)), requires_grad=True)
    fi = torch.tensor(rng.normal(size=(B, gb.max_states)), requires_grad=True)
    lengths = torch.tensor([5, 4])
    return gb, em, fw, aw, sw, fi, lengths


def test_equals_the_enumerated_entropy():
    gb, em, fw, aw, sw, fi, lengths = _inputs(0)
    h = alignment_entropy(em, gb, lengths, fw, aw, sw, fi)
    scaled = (em * fw[..., None]).detach().numpy()
    for b, g in enumerate(gb.graphs):
        n = g.num_arcs
        want = _brute_entropy(g, scaled[b], int(lengths[b]), aw[b, :n].detach().numpy(),
                              sw[b].detach().numpy(), fi[b].detach().numpy())
        assert abs(h[b].item() - want) < 1e-9


@pytest.mark.parametrize("time_dependent", [False, True])
def test_gradcheck_every_input(time_dependent):
    gb, em, fw, aw, sw, fi, lengths = _inputs(1, time_dependent)

    def fn(em, fw, aw, sw, fi):
        return alignment_entropy(em, gb, lengths, fw, aw, sw, fi)

    assert torch.autograd.gradcheck(fn, (em, fw, aw, sw, fi), eps=1e-6, atol=1e-6)


def test_gradient_matches_the_numpy_function():
    gb, em, *_ = _inputs(2)
    alignment_entropy(em, gb).sum().backward()
    ref = lattice.entropy(em.detach().numpy(), gb, return_gradients=True)
    np.testing.assert_allclose(em.grad.numpy(), ref.emission_grad, rtol=1e-12, atol=1e-12)


def test_gradient_is_scaled_by_the_incoming_gradient():
    gb, em, *_ = _inputs(3)
    (alignment_entropy(em, gb) * torch.tensor([2.0, -3.0])).sum().backward()
    ref = lattice.entropy(em.detach().numpy(), gb, return_gradients=True).emission_grad
    np.testing.assert_allclose(em.grad.numpy()[0], 2 * ref[0], atol=1e-12)
    np.testing.assert_allclose(em.grad.numpy()[1], -3 * ref[1], atol=1e-12)


def test_no_path_gives_zero_entropy_and_gradient():
    g = lattice.build("segmentation", [0, 1, 2])  # needs 3 frames
    em = torch.zeros(1, 2, 3, dtype=torch.float64, requires_grad=True)
    h = alignment_entropy(em, [g])
    h.backward()
    assert h.item() == 0.0
    assert not em.grad.any()


def test_nan_policy():
    g = lattice.build("ctc", [1])
    em = torch.zeros(2, 3, 2, dtype=torch.float64)
    em[1, 1, 1] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN"):
        alignment_entropy(em, g)
    em.requires_grad_(True)
    h = alignment_entropy(em, g, nan="propagate")
    assert math.isnan(h[1].item()) and not math.isnan(h[0].item())
    h[0].backward()  # the clean example keeps its value and gradient
    assert torch.isfinite(em.grad[0]).all()
    want = lattice.entropy(np.zeros((1, 3, 2)), g)[0]
    assert abs(h[0].item() - want) < 1e-12
    with pytest.raises(ValueError, match="nan"):
        alignment_entropy(em, g, nan="ignore")


def test_half_inputs_give_float32():
    g = lattice.build("ctc", [1, 2])
    em = torch.randn(1, 6, 3).log_softmax(-1).half().requires_grad_(True)
    h = alignment_entropy(em, g)
    assert h.dtype == torch.float32
    h.sum().backward()
    assert em.grad.dtype == torch.float16


def test_float32_close_to_float64():
    rng = np.random.default_rng(4)
    gb = lattice.build_batch("ctc", [rng.integers(1, 8, size=20) for _ in range(3)])
    x = torch.tensor(rng.normal(size=(3, 200, 8))).log_softmax(-1)
    h64 = alignment_entropy(x, gb)
    h32 = alignment_entropy(x.float(), gb)
    torch.testing.assert_close(h32.double(), h64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_torch_compile_fullgraph(backend):
    gb, em, fw, aw, sw, fi, lengths = _inputs(5)

    def fn(em, aw):
        return alignment_entropy(em, gb, lengths, arc_weights=aw)

    compiled = torch.compile(fn, backend=backend, fullgraph=True)
    results = []
    for f in (fn, compiled):
        e, a = em.detach().clone().requires_grad_(True), aw.detach().clone().requires_grad_(True)
        out = f(e, a)
        out.sum().backward()
        results.append((out.detach(), e.grad, a.grad))
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want)


def test_bad_inputs():
    g = lattice.build("ctc", [1])
    with pytest.raises(TypeError, match="emissions"):
        alignment_entropy(np.zeros((1, 3, 2)), g)
    with pytest.raises(ValueError, match="frame_weights"):
        alignment_entropy(torch.zeros(1, 3, 2), g, frame_weights=torch.zeros(1, 2))
    with pytest.raises(ValueError, match="classes"):
        alignment_entropy(torch.zeros(1, 3, 1), g)

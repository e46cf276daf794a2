"""The GPU backend on a real GPU (``pytest -m gpu``; skipped without CuPy and a CUDA
device): the same comparisons as the emulation (tests/test_cuda_emulation.py)
with CuPy arrays, dispatch by array type, CUDA tensors through the torch ops
against torch's CUDA ctc_loss, long and wide inputs, and a training step of the
demo's model. tools/gpu_check.sh runs these on the device machine."""

import numpy as np
import pytest

import lattice
from lattice.problem import make_problem

cupy = pytest.importorskip("cupy")
try:
    _DEVICES = cupy.cuda.runtime.getDeviceCount()
except Exception:  # no driver, no device
    _DEVICES = 0
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(_DEVICES == 0, reason="no CUDA device")]


def assert_close(got, want, dtype):
    got = cupy.asnumpy(got) if isinstance(got, cupy.ndarray) else got
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


def compare(emissions, graphs, lengths=None, **overrides):
    """The engine on CuPy emissions against the engine on the same numpy ones."""
    dtype = emissions.dtype
    device = cupy.asarray(emissions)
    for semiring in ("log", "max"):
        got = lattice.forward(device, graphs, lengths, semiring, **overrides)
        assert isinstance(got, cupy.ndarray)
        assert_close(got, lattice.forward(emissions, graphs, lengths, semiring,
                                          **overrides), dtype)
    want = lattice.forward_backward(emissions, graphs, lengths, **overrides)
    got = lattice.forward_backward(device, graphs, lengths, **overrides)
    for name, w, g in zip(want._fields, want, got):
        assert isinstance(g, cupy.ndarray) and g.shape == w.shape, name
        assert_close(g, w, dtype)
    want = lattice.viterbi(emissions, graphs, lengths, **overrides)
    got = lattice.viterbi(device, graphs, lengths, **overrides)
    for name in ("score", "states", "labels", "arcs", "tokens", "starts", "ends",
                 "num_segments"):
        np.testing.assert_array_equal(cupy.asnumpy(getattr(got, name)),
                                      getattr(want, name), err_msg=name)


def random_graph(rng, classes):
    """A random graph (self-loops or not, -inf weights, several start and final
    states): numpy-drawn, so that the device needs no hypothesis."""
    S = int(rng.integers(1, 7))
    A = int(rng.integers(0, 13))
    src, dst = rng.integers(0, S, size=A), rng.integers(0, S, size=A)
    if rng.random() < 0.5:
        src, dst = np.r_[np.arange(S), src], np.r_[np.arange(S), dst]

    def weights(n):
        w = rng.standard_normal(n)
        w[rng.random(n) < 0.15] = -np.inf
        return w

    return lattice.Graph(rng.integers(0, classes, size=S), src, dst, weights(len(src)),
                         weights(S), weights(S), tokens=rng.integers(-1, S, size=S))


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_equal_the_cpu_engine(seed):
    rng = np.random.default_rng(seed)
    B, T, C = int(rng.integers(1, 5)), int(rng.integers(1, 7)), int(rng.integers(1, 5))
    graphs = [random_graph(rng, C) for _ in range(B)]
    em = rng.uniform(-4, 4, size=(B, T, C))
    em[rng.random(em.shape) < 0.1] = -np.inf
    gb = lattice.batch(graphs)
    overrides = {}
    if seed % 3 == 1:
        overrides["arc_weights"] = rng.standard_normal((B, T, gb.max_arcs))
    if seed % 3 == 2:
        overrides["start_weights"] = np.where(rng.random((B, gb.max_states)) < 0.2,
                                              -np.inf, 0.0)
    compare(em, graphs, rng.integers(0, T + 1, size=B), **overrides)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ctc_segmentation_and_hmm(dtype):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((5, 40, 7))
    em = (logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)).astype(dtype)
    graphs = [lattice.build("ctc", [1, 2, 3]), lattice.build("ctc", [4, 4]),
              lattice.build("segmentation", [1, 5, 6]),
              lattice.build("hmm", [2, 3], states=2, min_frames=2),
              lattice.build("ctc", [])]
    compare(em, graphs, [40, 31, 12, 25, 7])
    compare(em, graphs, cupy.asarray([40, 31, 12, 25, 7]))  # lengths on the device


def test_time_dependent_weights():
    rng = np.random.default_rng(2)
    graphs = [lattice.build("ctc", [1, 2]), lattice.build("segmentation", [3, 1])]
    gb = lattice.batch(graphs)
    em = rng.standard_normal((2, 9, 4))
    compare(em, gb, arc_weights=rng.standard_normal((2, 9, gb.max_arcs)))
    compare(em, gb, arc_weights=cupy.asarray(rng.standard_normal((2, gb.max_arcs))))


def test_results_stay_on_the_device_and_are_deterministic():
    rng = np.random.default_rng(3)
    em = cupy.asarray(rng.standard_normal((8, 200, 30)))
    gb = lattice.build_batch("ctc", [rng.integers(1, 30, size=40) for _ in range(8)])
    first = lattice.forward_backward(em, gb)
    second = lattice.forward_backward(em, gb)
    assert first.emission_grad.device == em.device
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_and_wide_inputs(dtype):
    rng = np.random.default_rng(4)
    for B, T, C, S in ((1, 20000, 32, 2000), (2, 3000, 100, 2500)):  # S = 5001 states
        logits = rng.standard_normal((B, T, C))
        em = (logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)).astype(dtype)
        gb = lattice.build_batch("ctc", [rng.integers(1, C, size=S) for _ in range(B)])
        want = lattice.forward_backward(em, gb)
        got = lattice.forward_backward(cupy.asarray(em), gb)
        # both round a float64 log Z to the dtype: one float32 ulp apart at most
        rtol = 1e-9 if dtype == np.float64 else 2e-7
        np.testing.assert_allclose(cupy.asnumpy(got.score), want.score, rtol=rtol)
        # float32 inputs are recursed in float64 on both: posteriors exact to 1e-6
        np.testing.assert_allclose(cupy.asnumpy(got.emission_grad), want.emission_grad,
                                   atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_ctc_loss_on_cuda_equals_torchs(dtype):
    torch = pytest.importorskip("torch")
    from lattice.torch import ctc_loss

    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    rng = np.random.default_rng(5)
    T, B, C, S = 120, 6, 20, 30
    x = torch.from_numpy(rng.standard_normal((T, B, C))).to(getattr(torch, dtype))
    log_probs = x.log_softmax(-1).cuda().requires_grad_()
    targets = torch.from_numpy(rng.integers(1, C, size=(B, S))).cuda()
    input_lengths = torch.tensor([120, 100, 90, 120, 80, 61]).cuda()
    target_lengths = torch.tensor([30, 25, 20, 10, 30, 1]).cuda()
    ours = ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="sum")
    assert ours.is_cuda
    (g_ours,) = torch.autograd.grad(ours, log_probs)
    ref = log_probs.detach().double().requires_grad_()
    theirs = torch.nn.functional.ctc_loss(ref, targets, input_lengths, target_lengths,
                                          reduction="sum")
    (g_theirs,) = torch.autograd.grad(theirs, ref)
    tol = 1e-10 if dtype == "float64" else 1e-4
    torch.testing.assert_close(ours.double(), theirs, rtol=tol, atol=tol)
    # torch's gradient assumes log-softmax inputs: it adds their softmax
    torch.testing.assert_close(g_ours.double(), g_theirs - ref.detach().exp() * (
        torch.arange(T, device="cuda")[:, None] < input_lengths[None, :])[..., None],
        rtol=1e-5, atol=1e-6)


def test_viterbi_align_on_cuda_tensors():
    torch = pytest.importorskip("torch")
    from lattice.torch import viterbi_align

    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    em = torch.tensor([[[0., -5.], [0., -5.], [-5., 0.]]])
    graphs = [lattice.build("segmentation", [0, 1])]
    on_gpu = viterbi_align(em.cuda(), graphs)
    on_cpu = viterbi_align(em, graphs)
    assert on_gpu.states.is_cuda
    assert on_gpu.states.cpu().tolist() == on_cpu.states.tolist() == [[0, 0, 1]]


def test_a_training_step_of_the_demo_model_on_cuda():
    torch = pytest.importorskip("torch")
    from lattice.demo import DemoConfig, synthesize
    from lattice.torch import CTCLoss

    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    config = DemoConfig()
    x, y = synthesize(16, np.random.default_rng(6), config)

    class Reader(torch.nn.Module):  # the demo's model: conv, BiLSTM, linear
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(config.height, 32, 3, padding=1, stride=2)
            self.lstm = torch.nn.LSTM(32, 32, bidirectional=True)
            self.out = torch.nn.Linear(64, 11)

        def forward(self, x):
            h = torch.relu(self.conv(x.transpose(1, 2)))
            h, _ = self.lstm(h.permute(2, 0, 1))
            return self.out(h).log_softmax(-1)

    torch.manual_seed(0)
    model = Reader().cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    inputs = torch.from_numpy(x).cuda()
    targets = torch.cat([torch.from_numpy(t) for t in y]).cuda()
    target_lengths = torch.tensor([len(t) for t in y]).cuda()
    losses = []
    for _ in range(30):
        log_probs = model(inputs)
        lengths = torch.full((16,), log_probs.shape[0], device="cuda")
        loss = CTCLoss(blank=0)(log_probs, targets, lengths, target_lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    # the gradient of one step equals the CPU's
    model.zero_grad()
    log_probs = model(inputs)
    grad_gpu = torch.autograd.grad(CTCLoss(blank=0)(log_probs, targets, lengths,
                                                    target_lengths), log_probs)[0]
    cpu_lp = log_probs.detach().cpu().requires_grad_()
    grad_cpu = torch.autograd.grad(CTCLoss(blank=0)(cpu_lp, targets.cpu(), lengths.cpu(),
                                                    target_lengths.cpu()), cpu_lp)[0]
    torch.testing.assert_close(grad_gpu.cpu(), grad_cpu, rtol=1e-4, atol=1e-6)


def test_make_problem_reads_device_lengths():
    em = cupy.zeros((2, 5, 3))
    backend, p = make_problem(em, lattice.build("ctc", [1]), cupy.asarray([5, 3]),
                              None, None, None)
    assert backend.name == "cupy" and p.lengths.tolist() == [5, 3]


def test_losses_on_cuda_equal_the_cpu_ones():
    """ctc_loss (mean reduction: target lengths on the host), lattice_score with frame
    and arc weights, and mmi_loss, on CUDA tensors against the same on the CPU."""
    torch = pytest.importorskip("torch")
    from lattice.torch import ctc_loss, lattice_score, mmi_loss

    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    rng = np.random.default_rng(7)
    T, B, C = 30, 3, 5
    lp = torch.from_numpy(rng.standard_normal((T, B, C))).log_softmax(-1)
    targets = torch.tensor([[1, 2, 3], [4, 4, 0], [2, 0, 0]])
    il, tl = (30, 25, 9), torch.tensor([3, 2, 1])
    den = lattice.build("ctc_denominator", [[1, 2], [2, 3, 1], [4, 4]], num_tokens=C)
    graphs = [lattice.build("ctc", [1, 2]), lattice.build("segmentation", [3, 1]),
              lattice.build("ctc", [4])]
    frame_w = torch.from_numpy(rng.uniform(0.5, 1.5, size=(B, T)))

    def losses(device):
        x = lp.to(device).requires_grad_()
        fw = frame_w.to(device).requires_grad_()
        value = (ctc_loss(x, targets.to(device), il, tl)
                 + mmi_loss(x, targets, il, tl, lattice.batch([den]))
                 + lattice_score(x.transpose(0, 1), graphs, frame_weights=fw).sum())
        value.backward()
        return value.detach().cpu(), x.grad.cpu(), fw.grad.cpu()

    for got, want in zip(losses("cuda"), losses("cpu")):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_the_alignment_distribution_takes_cupy_arrays():
    rng = np.random.default_rng(9)
    em = rng.standard_normal((2, 10, 4))
    graphs = [lattice.build("ctc", [1, 2]), lattice.build("segmentation", [3, 1])]
    got = lattice.sample(cupy.asarray(em), graphs, 3, seed=1)
    want = lattice.sample(em, graphs, 3, seed=1)
    assert isinstance(got.states, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(got.states), want.states)
    np.testing.assert_array_equal(cupy.asnumpy(lattice.entropy(cupy.asarray(em), graphs)),
                                  lattice.entropy(em, graphs))


def test_token_posteriors_of_cupy_arrays():
    em = np.random.default_rng(10).standard_normal((2, 8, 4))
    graphs = [lattice.build("ctc", [1, 2]), lattice.build("ctc", [3])]
    got = lattice.token_posteriors(cupy.asarray(em), graphs, [8, 5])
    want = lattice.token_posteriors(em, graphs, [8, 5])
    np.testing.assert_allclose(cupy.asnumpy(got.non_token), want.non_token, atol=1e-12)


def test_ctc_loss_on_cuda_propagates_nan_and_scores_empty_inputs_as_torch():
    """The torch ops' rarer paths on CUDA tensors: a NaN frame makes its example's
    loss and gradients NaN (nan="propagate"), an empty input with an empty target
    scores 0; the other examples keep their values. As on the CPU."""
    torch = pytest.importorskip("torch")
    from lattice.torch import ctc_loss

    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    rng = np.random.default_rng(11)
    lp = torch.from_numpy(rng.standard_normal((12, 3, 5))).log_softmax(-1)
    lp[4, 1, 3] = float("nan")  # a class the graph of example 1 reads
    targets = torch.tensor([[1, 2], [3, 4], [0, 0]])
    il, tl = torch.tensor([12, 12, 0]), torch.tensor([2, 2, 0])

    def run(device):
        x = lp.to(device).requires_grad_()
        loss = ctc_loss(x, targets.to(device), il, tl, reduction="none")
        loss.sum().backward()
        return loss.detach().cpu(), x.grad.cpu()

    (loss_gpu, grad_gpu), (loss_cpu, grad_cpu) = run("cuda"), run("cpu")
    assert torch.isnan(loss_gpu[1]) and loss_gpu[2] == 0
    torch.testing.assert_close(loss_gpu, loss_cpu, equal_nan=True)
    torch.testing.assert_close(grad_gpu, grad_cpu, equal_nan=True)

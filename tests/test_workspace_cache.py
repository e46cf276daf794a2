"""The CPU backend's workspace pool (``workspace_cache``): kernels reuse their
workspaces between calls, and no result depends on what a reused buffer held."""

import threading

import numpy as np
import pytest

import lattice
from lattice.backends import cpu as cpu_module

CPU = lattice.backends.get_backend("cpu")


def _log_softmax(x):
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def _calls(e, targets, graphs):
    """One call of each kernel family a user reaches with these inputs."""
    fb = lattice.ctc_forward_backward(e, targets)
    gfb = lattice.forward_backward(e, graphs)
    return [fb.score, fb.emission_grad, lattice.ctc_score(e, targets),
            gfb.score, gfb.emission_grad, lattice.forward(e, graphs),
            lattice.viterbi(e, graphs).score,
            lattice.forward_backward(e, graphs, checkpoint=3).emission_grad]


def test_poisoned_workspaces_change_no_result(log_space_recomputations):
    """Every kept buffer is filled with NaN between calls: the kernels must write
    every cell they read, so the results are the same bits as with fresh
    workspaces (allocated at every call, workspace_cache=0), and no example is
    refused by the probability-space check for it (a NaN read would be, and its
    log-space recomputation would hide it)."""
    recomputed = log_space_recomputations
    rng = np.random.default_rng(0)
    e = _log_softmax(rng.normal(size=(4, 60, 7))).astype(np.float32)
    targets = [rng.integers(1, 7, size=n) for n in (3, 20, 0, 9)]
    graphs = lattice.build_batch("ctc", targets)
    with CPU.options(workspace_cache=0):
        want = _calls(e, targets, graphs)
    _calls(e, targets, graphs)  # fill the pool
    assert cpu_module._POOL.buffers
    for buf in cpu_module._POOL.buffers.values():
        buf.view(np.uint8)[:] = 0xFF  # NaN in every float and double
    got = _calls(e, targets, graphs)
    for g, w in zip(got, want):
        assert g.tobytes() == w.tobytes()
    assert recomputed == []


def test_buffers_are_reused_and_freed_with_the_option():
    rng = np.random.default_rng(1)
    e = _log_softmax(rng.normal(size=(2, 50, 5)))
    lattice.ctc_forward_backward(e, [[1, 2], [3]])
    kept = {k: id(b) for k, b in cpu_module._POOL.buffers.items()}
    assert any(k[0] == "ctc_forward_backward_prob" for k in kept)
    lattice.ctc_forward_backward(e, [[1, 2], [3]])
    assert {k: id(b) for k, b in cpu_module._POOL.buffers.items()} == kept
    with CPU.options(workspace_cache=0):
        lattice.ctc_forward_backward(e, [[1, 2], [3]])
        assert not cpu_module._POOL.buffers


def test_a_buffer_in_use_is_never_handed_out_again():
    """The kernels see views of the pool's buffers: while one is alive, the next
    request gets another buffer; once none is, the kept one is handed out again."""
    pool = cpu_module._WorkspacePool()
    a = pool.take("k", 64, 1 << 20)[:64].view(np.float64)
    b = pool.take("k", 64, 1 << 20)[:64].view(np.float64)
    assert not np.shares_memory(a, b)
    kept = b.base
    assert pool.buffers["k"] is kept
    del a, b, kept
    c = pool.take("k", 32, 1 << 20)  # free again, and large enough
    assert c is pool.buffers["k"] and c.nbytes == 64


def test_the_pool_stays_within_its_limit():
    pool = cpu_module._WorkspacePool()
    pool.take("a", 600, 1000)
    pool.take("b", 600, 1000)  # would pass the limit: allocated, not kept
    assert list(pool.buffers) == ["a"]
    assert pool.take("c", 2000, 1000).nbytes == 2000 and "c" not in pool.buffers


def test_each_python_thread_has_its_own_pool():
    rng = np.random.default_rng(2)
    e = _log_softmax(rng.normal(size=(2, 40, 5)))
    lattice.ctc_forward_backward(e, [[1, 2], [3]])
    seen = []

    def work():
        lattice.ctc_forward_backward(e, [[1, 2], [3]])
        seen.append({id(b) for b in cpu_module._POOL.buffers.values()})

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen[0] and not seen[0] & {id(b) for b in cpu_module._POOL.buffers.values()}


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.5, TypeError)])
def test_bad_limits_are_refused(value, error):
    with pytest.raises(error, match="workspace_cache"):
        with CPU.options(workspace_cache=value):
            pass

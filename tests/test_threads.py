"""Thread count control, and results that do not depend on it (DESIGN.md 6 and 7)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import lattice
from outputs import all_outputs, assert_same_bits


@pytest.fixture(autouse=True)
def restore_threads(cpu_options):
    """Every test here leaves the process-wide thread setting at its default.

    Small batches normally run on the calling thread (the cpu backend's option
    ``serial_work``); the threshold is lifted here so the parallel kernels really
    run on these batches.
    """
    cpu_options(serial_work=0)
    lattice.set_num_threads(None)
    yield
    lattice.set_num_threads(None)


def test_small_batches_run_serially_and_agree(cpu_options):
    e, gs, lens, arc_t = _batch(seed=2)
    lattice.set_num_threads(2)
    parallel = _run_all(e, lattice.batch(gs), lens, arc_t)
    cpu_options(serial_work=10**12)
    serial = _run_all(e, lattice.batch(gs), lens, arc_t)
    assert_same_bits(serial, parallel)


def _random_graph(rng, num_states, num_arcs, num_classes):
    inf = -np.inf
    src = rng.integers(0, num_states, size=num_arcs)
    dst = rng.integers(0, num_states, size=num_arcs)
    # self-loops everywhere so long paths exist; a few forbidden arcs
    src = np.concatenate([np.arange(num_states), src])
    dst = np.concatenate([np.arange(num_states), dst])
    weight = rng.normal(size=src.size)
    weight[rng.random(src.size) < 0.1] = inf
    start = np.where(rng.random(num_states) < 0.5, rng.normal(size=num_states), inf)
    final = np.where(rng.random(num_states) < 0.5, rng.normal(size=num_states), inf)
    start[0] = 0.0
    final[-1] = 0.0
    return lattice.Graph(rng.integers(0, num_classes, size=num_states), src, dst,
                         weight, start, final,
                         tokens=rng.integers(-1, num_states, size=num_states))


def _batch(seed=0):
    """~16 graphs of very different sizes, variable lengths, one infeasible."""
    rng = np.random.default_rng(seed)
    C, T = 6, 60
    gs = []
    for i in range(16):
        kind = i % 4
        if kind == 0:
            target = rng.integers(1, C, size=rng.integers(0, 15))
            gs.append(lattice.build("ctc", target))
        elif kind == 1:
            target = rng.integers(0, C, size=rng.integers(1, 20))
            gs.append(lattice.build("segmentation", target))
        else:
            S = int(rng.integers(1, 40))
            gs.append(_random_graph(rng, S, int(rng.integers(0, 4 * S)), C))
    gs[5] = lattice.build("segmentation", list(range(5)) * 20)  # 100 symbols: -inf
    e = np.log(rng.dirichlet(np.ones(C), size=(16, T)))
    lens = rng.integers(0, T + 1, size=16)
    lens[0] = T
    lens[3] = 0
    arc_t = rng.normal(size=(16, T, max(g.num_arcs for g in gs)))
    return e, gs, lens, arc_t


def _run_all(e, gb, lens, arc_t):
    out = all_outputs(e, gb, lens)
    fbt = lattice.forward_backward(e, gb, lens, arc_weights=arc_t)
    out["fb_time_arc_grad"] = fbt.arc_grad
    out["fb_time_emission_grad"] = fbt.emission_grad
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_independent_of_thread_count(dtype):
    e, gs, lens, arc_t = _batch()
    e = e.astype(dtype)
    arc_t = arc_t.astype(dtype)
    gb = lattice.batch(gs)
    lattice.set_num_threads(1)
    assert lattice.get_num_threads() == 1
    serial = _run_all(e, gb, lens, arc_t)
    # sanity: the batch exercises feasible and infeasible examples
    assert np.isneginf(serial["forward_log"]).sum() >= 2
    assert np.isfinite(serial["forward_log"]).sum() >= 8
    for n in (2, 3, 16):
        lattice.set_num_threads(n)
        parallel = _run_all(e, gb, lens, arc_t)
        for name, value in serial.items():
            assert parallel[name].dtype == value.dtype, name
            # bitwise identical, -inf and all
            assert parallel[name].tobytes() == value.tobytes(), (name, n)


def test_repeated_parallel_calls_are_deterministic():
    e, gs, lens, arc_t = _batch(seed=1)
    gb = lattice.batch(gs)
    lattice.set_num_threads(2)
    first = _run_all(e, gb, lens, arc_t)
    for _ in range(3):
        again = _run_all(e, gb, lens, arc_t)
        assert_same_bits(again, first)


@pytest.mark.parametrize("bad", [0, -1, -100])
def test_set_num_threads_rejects_non_positive(bad):
    with pytest.raises(ValueError, match="positive"):
        lattice.set_num_threads(bad)


@pytest.mark.parametrize("bad", [1.5, 2.0, True, False, "2", [2]])
def test_set_num_threads_rejects_non_int(bad):
    with pytest.raises(TypeError):
        lattice.set_num_threads(bad)


def test_rejected_values_leave_setting_unchanged():
    lattice.set_num_threads(1)
    for bad in (0, -1, 1.5, True):
        with pytest.raises((TypeError, ValueError)):
            lattice.set_num_threads(bad)
        assert lattice.get_num_threads() == 1


def test_set_and_restore_num_threads():
    default = lattice.get_num_threads()
    assert isinstance(default, int) and default >= 1
    lattice.set_num_threads(1)
    assert lattice.get_num_threads() == 1
    lattice.set_num_threads(np.int64(3))
    expected = 3 if lattice.openmp_enabled() else 1
    assert lattice.get_num_threads() == expected
    assert type(lattice.get_num_threads()) is int
    lattice.set_num_threads(None)
    assert lattice.get_num_threads() == default


def _openmp_disabled_by_env():
    return os.environ.get("LATTICE_DISABLE_OPENMP", "0") not in ("", "0")


@pytest.mark.skipif(
    _openmp_disabled_by_env(),
    reason="LATTICE_DISABLE_OPENMP is set: this build is expected to be serial",
)
def test_openmp_enabled_in_this_build():
    # setup.py builds with -fopenmp unless LATTICE_DISABLE_OPENMP is set; a silent
    # fallback to the serial build on this machine would be a build regression
    assert lattice.openmp_enabled() is True


def test_without_openmp_everything_runs_on_one_thread():
    if lattice.openmp_enabled():
        pytest.skip("this build has OpenMP")
    lattice.set_num_threads(4)
    assert lattice.get_num_threads() == 1


@pytest.mark.skipif(
    _openmp_disabled_by_env(),
    reason="LATTICE_DISABLE_OPENMP is set: the serial build ignores OMP_NUM_THREADS",
)
def test_default_follows_omp_num_threads(tmp_path):
    if not lattice.openmp_enabled():
        pytest.skip("this build has no OpenMP")
    code = "import lattice; print(lattice.get_num_threads())"
    for n in ("1", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=n)
        # run outside the repository: `python -c` puts the working directory first
        # on sys.path, where the source folder (without the built extension) would
        # shadow the installed package
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                             capture_output=True, text=True, cwd=tmp_path)
        assert out.stdout.strip() == n


def test_num_threads_context_manager_restores():
    lattice.set_num_threads(2)
    with lattice.num_threads(1):
        assert lattice.get_num_threads() == 1
    assert lattice.get_num_threads() == 2
    with pytest.raises(ValueError):
        with lattice.num_threads(0):
            pass  # pragma: no cover
    assert lattice.get_num_threads() == 2


def _fork_child(queue, emissions, graphs):
    queue.put(lattice.forward(emissions, graphs).tobytes())


def test_forked_child_after_parallel_kernels_does_not_hang():
    """GNU libgomp's pool does not survive fork: a child that used it would hang."""
    import multiprocessing

    e, gs, lens, _ = _batch(seed=3)
    gb = lattice.batch(gs)
    lattice.set_num_threads(2)
    expected = lattice.forward(e, gb)  # the parent's OpenMP pool is now running
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_fork_child, args=(queue, e, gb))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in the kernels")
    assert child.exitcode == 0
    assert queue.get(timeout=10) == expected.tobytes()


def test_dataloader_workers_after_the_parent_used_the_engine():
    torch = pytest.importorskip("torch")
    import torch.utils.data

    e, gs, lens, _ = _batch(seed=4)
    gb = lattice.batch(gs)
    lattice.set_num_threads(2)
    expected = lattice.forward(e, gb)

    class Scores(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.from_numpy(lattice.forward(e, gb))

    loader = torch.utils.data.DataLoader(Scores(), batch_size=None, num_workers=2,
                                         multiprocessing_context="fork", timeout=60)
    for scores in loader:
        assert scores.numpy().tobytes() == expected.tobytes()


def test_kernels_release_the_gil():
    """A Python thread keeps running while a long kernel runs in another one."""
    import threading

    rng = np.random.default_rng(5)
    e = np.log(rng.dirichlet(np.ones(8), size=(2, 20000)))
    gb = lattice.batch([lattice.build("ctc", rng.integers(1, 8, 200)) for _ in range(2)])
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(1)

    lattice.set_num_threads(1)
    counter = threading.Thread(target=count)
    counter.start()
    try:
        before = len(ticks)
        lattice.forward_backward(e, gb)
        during = len(ticks) - before
    finally:
        done.set()
        counter.join()
    assert during > 1000  # the counter ran thousands of iterations meanwhile


def test_concurrent_calls_from_python_threads_agree():
    from concurrent.futures import ThreadPoolExecutor

    e, gs, lens, arc_t = _batch(seed=6)
    gb = lattice.batch(gs)
    expected = _run_all(e, gb, lens, arc_t)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _run_all(e, gb, lens, arc_t), range(8)))
    for result in results:
        assert_same_bits(result, expected)


# --------------------------------------------------------------------------------
# a thread count the system cannot meet is an exception, never a dead process
# --------------------------------------------------------------------------------


def test_set_num_threads_refuses_more_than_max_threads():
    cap = lattice.max_threads()
    assert cap >= 16 and cap >= 4 * len(os.sched_getaffinity(0))
    lattice.set_num_threads(cap)
    assert lattice.get_num_threads() == (cap if lattice.openmp_enabled() else 1)
    for bad in (cap + 1, 2000):
        with pytest.raises(ValueError, match=rf"at most lattice.max_threads\(\) = {cap}"):
            lattice.set_num_threads(bad)
    assert lattice.get_num_threads() == (cap if lattice.openmp_enabled() else 1)


def test_omp_num_threads_beyond_the_cap_is_capped(tmp_path):
    if not lattice.openmp_enabled():
        pytest.skip("this build has no OpenMP")
    code = "import lattice; print(lattice.get_num_threads(), lattice.max_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="2000")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True, cwd=tmp_path)
    used, cap = map(int, out.stdout.split())
    assert used == cap


_LIMITED_CHILD = """
import numpy as np, lattice
lattice.set_num_threads(16)
gb = lattice.build_batch("ctc", [[1, 2, 3]] * 64)
try:
    lattice.forward(np.zeros((64, 200, 5)), gb)
except RuntimeError as exc:
    print("refused:", exc)
else:
    print("ran")
lattice.set_num_threads(1)
print(float(lattice.forward(np.zeros((64, 200, 5)), gb)[0]))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="resource limits as on Linux")
def test_threads_the_system_refuses_raise_instead_of_aborting(tmp_path):
    """Under a memory limit the OpenMP runtime could not create 16 threads (with
    256 MiB stacks) and ended the process ("libgomp: Thread creation failed"); now
    the team is tried first and the call raises RuntimeError; one thread works."""
    if not lattice.openmp_enabled():
        pytest.skip("this build has no OpenMP")
    import resource

    def limits():
        resource.setrlimit(resource.RLIMIT_STACK, (256 << 20, 256 << 20))
        resource.setrlimit(resource.RLIMIT_AS, (2000 << 20, 2000 << 20))

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("OMP_STACKSIZE", None)
    env.pop("GOMP_STACKSIZE", None)
    done = subprocess.run([sys.executable, "-c", _LIMITED_CHILD], env=env, cwd=tmp_path,
                          preexec_fn=limits, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused: the system cannot start 16 threads"), lines
    assert float(lines[1]) > 0


def test_check_team_remembers_what_the_system_met():
    from lattice import _threads

    assert _threads.check_team(1) == 1
    assert _threads.check_team(3) == 3
    assert _threads.check_team(2) == 2  # below a team already started: no new try


@pytest.mark.parametrize("value, expected", [
    ("", 0), ("64M", 64 << 20), ("512k", 512 << 10), ("4096", 4096 << 10),
    ("1G", 1 << 30), ("junk", 0), ("16B", 0),
])
def test_openmp_stack_size_is_read_like_the_runtime(monkeypatch, value, expected):
    from lattice import _threads

    monkeypatch.delenv("GOMP_STACKSIZE", raising=False)
    monkeypatch.setenv("OMP_STACKSIZE", value)
    assert _threads._stack_size() == expected

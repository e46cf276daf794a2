"""``lattice bench``: lattice's CTC against torch's (and optax's) on this machine.

Every implementation computes the summed CTC loss of the same seeded batch (forward)
and its gradient with respect to the log-probabilities (forward + backward), with the
same number of threads. The table gives the median time per call over several
samples, each a loop of calls at least ``MIN_SAMPLE_MS`` long (:func:`median_ms`),
and the ratio other / lattice (above 1: lattice is faster), and, for forward +
backward, the largest error of lattice's and torch's gradients against torch's
float64 gradient of the same inputs (lattice's gradient is minus the posterior,
torch's assumes log-softmax inputs and adds their softmax: the reference is
converted for each). The asv suite in ``asv_benchmarks/`` measures the same things
and more, over time. The command line is :mod:`lattice.cli.bench`; torch (and jax)
are imported only when measuring.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["MIN_SAMPLE_MS", "SHAPES", "ctc_problem", "format_table", "gradient_errors",
           "median_ms", "run_bench"]

# (B, T, C, S): batch, frames, classes, target length
SHAPES = [(16, 200, 32, 40), (32, 500, 64, 100), (32, 1000, 64, 200), (8, 2000, 512, 400)]


def ctc_problem(shape, dtype, seed=0):
    """The seeded batch every implementation is timed on: log-softmax scores of
    standard normal logits and random targets (no blank), all of full length.

    Parameters
    ----------
    shape : (B, T, C, S)
    dtype : numpy dtype
    seed : int

    Returns
    -------
    log_probs : ndarray, shape (T, B, C)
    targets : ndarray of int64, shape (B, S), ids in [1, C)

    Examples
    --------
    >>> from lattice.bench import ctc_problem
    >>> log_probs, targets = ctc_problem((2, 30, 5, 4), "float32")
    >>> log_probs.shape, targets.shape, bool(targets.min() >= 1)
    ((30, 2, 5), (2, 4), True)
    """
    B, T, C, S = shape
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((T, B, C))
    log_probs = (logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)).astype(dtype)
    return log_probs, rng.integers(1, C, size=(B, S))


def _torch_runners(impl, log_probs, targets):
    import torch

    if impl == "lattice":
        from lattice.torch import ctc_loss
    else:
        ctc_loss = torch.nn.functional.ctc_loss
    T, B, _ = log_probs.shape
    lp = torch.from_numpy(log_probs).requires_grad_()
    args = (torch.from_numpy(targets), torch.full((B,), T),
            torch.full((B,), targets.shape[1]))

    def forward():
        with torch.no_grad():
            ctc_loss(lp, *args, reduction="sum")

    def forward_backward():
        lp.grad = None
        ctc_loss(lp, *args, reduction="sum").backward()

    return forward, forward_backward


def _optax_runners(log_probs, targets):
    import jax
    import optax

    # float64 needs jax's 64-bit mode; float32 must run without it, or its labels
    # and indices become int64 and optax takes about twice as long (a float32 row
    # measured after a float64 one would flatter lattice)
    jax.config.update("jax_enable_x64", bool(log_probs.dtype == np.float64))
    logits = jax.numpy.asarray(np.transpose(log_probs, (1, 0, 2)))
    labels = jax.numpy.asarray(targets)
    pad = jax.numpy.zeros(logits.shape[:2], dtype=logits.dtype)
    label_pad = jax.numpy.zeros(labels.shape, dtype=logits.dtype)

    def loss(x):
        return optax.ctc_loss(x, pad, labels, label_pad).sum()

    value, grad = jax.jit(loss), jax.jit(jax.grad(loss))
    return (lambda: value(logits).block_until_ready(),
            lambda: grad(logits).block_until_ready())


def gradient_errors(log_probs, targets):
    """The largest absolute error of lattice's and torch's CTC gradients against
    torch's float64 gradient of the same inputs.

    Parameters
    ----------
    log_probs : ndarray, shape (T, B, C)
        Log-probabilities in the dtype to measure (float32 or float64); every
        example uses all T frames.
    targets : ndarray of int, shape (B, S)
        Every example's target, all of length S.

    Returns
    -------
    dict
        ``{"lattice": error, "torch": error}``: the largest absolute difference of
        each implementation's gradient of the summed loss from the reference, in
        its own convention (lattice's is minus the posterior, torch's adds the
        softmax of its inputs).

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.bench import gradient_errors
    >>> x = np.random.default_rng(0).standard_normal((50, 2, 6))
    >>> lp = (x - np.logaddexp.reduce(x, axis=-1, keepdims=True)).astype(np.float32)
    >>> err = gradient_errors(lp, np.array([[1, 2, 3], [4, 5, 1]]))
    >>> err["lattice"] < 1e-6
    True
    """
    import torch

    from lattice.torch import ctc_loss

    T, B, _ = log_probs.shape
    args = (torch.from_numpy(targets), torch.full((B,), T),
            torch.full((B,), targets.shape[1]))

    def gradient(fn, x):
        x = x.clone().requires_grad_()
        fn(x, *args, reduction="sum").backward()
        return x.grad.double()

    x = torch.from_numpy(log_probs)
    reference = gradient(torch.nn.functional.ctc_loss, x.double())
    return {
        "lattice": float((gradient(ctc_loss, x) - (reference - x.double().exp()))
                         .abs().max()),
        "torch": float((gradient(torch.nn.functional.ctc_loss, x) - reference)
                       .abs().max()),
    }


# The shortest sample median_ms times: a call of about 1 ms timed alone moved by
# 40-100 % between samples (the scheduler, and XLA's threads still busy after
# optax's call), which decided whether the smallest shape read 3x or 5x torch; a
# loop of calls this long moves by a few percent, as asv's and timeit's samples do.
MIN_SAMPLE_MS = 20.0


def median_ms(fn, repeat, sync=None, min_sample_ms=MIN_SAMPLE_MS):
    """The median milliseconds per call of ``fn`` over ``repeat`` samples.

    As asv and ``timeit`` time: after one warm-up call (which compiles jax's
    functions and CuPy's kernels), the number of calls ``n`` in a sample is
    found (1, 2, 5, 10, 20, 50, ... until ``n`` calls take at least
    ``min_sample_ms``); each sample then times ``n`` calls in a row and gives
    their mean, and the median of the samples is returned. A call that takes
    ``min_sample_ms`` or longer is timed one at a time. ``sync``, if given, is
    called after each call, inside the timing (a device synchronisation).

    Parameters
    ----------
    fn : callable
    repeat : int
        Samples (>= 1).
    sync : callable, optional
    min_sample_ms : float, default MIN_SAMPLE_MS (20)
        The shortest sample; 0 times one call per sample.

    Examples
    --------
    >>> from lattice.bench import median_ms
    >>> median_ms(lambda: sum(range(1000)), 3) > 0
    True
    """

    def sample(n):
        start = time.perf_counter()
        for _ in range(n):
            fn()
            if sync is not None:
                sync()
        return time.perf_counter() - start

    sample(1)  # the warm-up
    n, steps = 1, (2, 2.5, 2)  # 1, 2, 5, 10, 20, 50, ...
    k = 0
    while sample(n) * 1e3 < min_sample_ms:
        n = int(n * steps[k % 3])
        k += 1
    times = [sample(n) / n for _ in range(repeat)]
    return float(np.median(times)) * 1e3


def available_implementations():
    """The implementations installed here, lattice first.

    Examples
    --------
    >>> from lattice.bench import available_implementations
    >>> available_implementations()[0]
    'lattice'
    """
    impls = ["lattice", "torch"]
    try:
        import torch  # noqa: F401
    except ImportError:
        return []
    try:
        import jax  # noqa: F401
        import optax  # noqa: F401
    except ImportError:
        return impls
    return impls + ["optax"]


def run_bench(shapes=SHAPES, dtypes=("float32",), threads=2, repeat=5, progress=None):
    """Time CTC forward and forward+backward for every implementation installed.

    Parameters
    ----------
    shapes : sequence of (B, T, C, S)
    dtypes : sequence of {"float32", "float64"}
    threads : int
        Threads for every implementation (lattice and torch; XLA uses its own).
    repeat : int
        Timed samples per measurement (:func:`median_ms`: after one warm-up, each
        a loop of calls at least ``MIN_SAMPLE_MS`` long); the median is reported.
    progress : callable, optional
        Called with a short string before each measurement.

    Returns
    -------
    list of dict
        One row per (shape, dtype, pass) with the median milliseconds of each
        implementation (``"ms"``) and, for forward+backward, the largest gradient
        error of lattice and torch against torch in float64 (``"error"``).

    Raises
    ------
    ImportError
        If torch is not installed (lattice's torch ops are what is measured).

    Examples
    --------
    >>> from lattice.bench import run_bench
    >>> rows = run_bench(shapes=[(2, 30, 5, 4)], repeat=1)
    >>> rows[0]["ms"]["lattice"] > 0 and rows[0]["ms"]["torch"] > 0
    True
    >>> [row["pass"] for row in rows]
    ['forward', 'forward+backward']
    """
    import lattice

    impls = available_implementations()
    if not impls:
        raise ImportError("lattice bench needs torch: pip install 'lattice[torch]'")
    import torch

    lattice.set_num_threads(threads)
    torch.set_num_threads(threads)
    rows = []
    try:
        for shape in shapes:
            for dtype in dtypes:
                log_probs, targets = ctc_problem(shape, dtype)
                runners = {}
                for impl in impls:
                    if impl == "optax":
                        runners[impl] = _optax_runners(log_probs, targets)
                    else:
                        runners[impl] = _torch_runners(impl, log_probs, targets)
                for index, name in enumerate(("forward", "forward+backward")):
                    timings = {}
                    for impl, fns in runners.items():
                        if progress is not None:
                            progress(f"{impl} {name} {shape} {dtype}")
                        timings[impl] = median_ms(fns[index], repeat)
                    row = {"shape": shape, "dtype": dtype, "pass": name, "ms": timings}
                    if index == 1:
                        row["error"] = gradient_errors(log_probs, targets)
                    rows.append(row)
    finally:
        lattice.set_num_threads(None)
    return rows


def format_table(rows):
    """Render :func:`run_bench` rows as a text table with ratios to lattice.

    Examples
    --------
    >>> from lattice.bench import format_table
    >>> row = {"shape": (1, 2, 3, 1), "dtype": "float32", "pass": "forward",
    ...        "ms": {"lattice": 1.0, "torch": 5.0}}
    >>> print(format_table([row]))
    B T C S dtype   pass    lattice ms torch ms torch/lattice
    1 2 3 1 float32 forward        1.0      5.0          5.00
    >>> grad = dict(row, **{"pass": "forward+backward",
    ...                     "error": {"lattice": 3e-8, "torch": 2.5e-3}})
    >>> print(format_table([grad]).splitlines()[1])
    1 2 3 1 float32 forward+backward        1.0      5.0          5.00     3.0e-08   2.5e-03
    """
    if not rows:
        return "(no measurements)"
    others = [impl for impl in rows[0]["ms"] if impl != "lattice"]
    errors = any("error" in row for row in rows)
    header = ["B", "T", "C", "S", "dtype", "pass", "lattice ms"]
    header += [f"{impl} ms" for impl in others] + [f"{impl}/lattice" for impl in others]
    if errors:
        header += ["lattice err", "torch err"]
    table = [header]
    for row in rows:
        ms = row["ms"]
        cells = [str(v) for v in row["shape"]] + [row["dtype"], row["pass"]]
        cells += [f"{ms['lattice']:.1f}"] + [f"{ms[impl]:.1f}" for impl in others]
        cells += [f"{ms[impl] / ms['lattice']:.2f}" for impl in others]
        if errors:
            err = row.get("error")
            cells += ([f"{err['lattice']:.1e}", f"{err['torch']:.1e}"] if err
                      else ["", ""])
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    left = {4, 5}  # dtype and pass read better left-aligned
    lines = []
    for r in table:
        cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append(" ".join(cells).rstrip())
    return "\n".join(lines)

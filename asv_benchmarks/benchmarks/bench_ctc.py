"""CTC loss forward+backward and forward only: lattice against torch and optax.

Each implementation computes the summed CTC loss of the same seeded batch and its
gradient with respect to the log-probabilities. Implementations that are not
installed are skipped (NotImplementedError in setup).
"""

import numpy as np

from .common import DTYPES, IMPLS, SHAPES, SMOKE, THREADS, ctc_problem, set_threads


class _CTC:
    params = (list(SHAPES), DTYPES, THREADS, IMPLS)
    param_names = ["shape", "dtype", "threads", "impl"]
    timeout = 300

    def setup(self, shape, dtype, threads, impl):
        log_probs, targets, input_lengths, target_lengths = ctc_problem(shape, dtype)
        set_threads(threads)
        if impl in ("lattice", "torch"):
            try:
                import torch
            except ImportError:
                raise NotImplementedError("torch is not installed")
            if impl == "lattice":
                from lattice.torch import ctc_loss
            else:
                ctc_loss = torch.nn.functional.ctc_loss
            lp = torch.from_numpy(log_probs).requires_grad_()
            args = (torch.from_numpy(targets), torch.from_numpy(input_lengths),
                    torch.from_numpy(target_lengths))

            def run_fb():
                lp.grad = None
                ctc_loss(lp, *args, reduction="sum").backward()

            def run_fwd():
                with torch.no_grad():
                    ctc_loss(lp, *args, reduction="sum")

        else:
            try:
                import jax
                import optax
            except ImportError:
                raise NotImplementedError("optax is not installed")
            # off for float32: with it optax's labels and indices are int64 and
            # its float32 CTC takes about twice as long (lattice.bench does the same)
            jax.config.update("jax_enable_x64", dtype == "float64")
            logits = jax.numpy.asarray(np.transpose(log_probs, (1, 0, 2)))
            labels = jax.numpy.asarray(targets)
            pad = jax.numpy.zeros(logits.shape[:2], dtype=logits.dtype)
            lpad = jax.numpy.zeros(labels.shape, dtype=logits.dtype)

            def loss(x):
                return optax.ctc_loss(x, pad, labels, lpad).sum()

            grad = jax.jit(jax.grad(loss))
            value = jax.jit(loss)

            def run_fb():
                grad(logits).block_until_ready()

            def run_fwd():
                value(logits).block_until_ready()

        self.run_fb, self.run_fwd = run_fb, run_fwd


class CTCForwardBackward(_CTC):
    def setup(self, *params):
        super().setup(*params)
        self.run_fb()  # warm up (and compile, for jax)

    def time_ctc_forward_backward(self, *params):
        self.run_fb()

    def peakmem_ctc_forward_backward(self, *params):
        self.run_fb()


class CTCForward(_CTC):
    def setup(self, *params):
        super().setup(*params)
        self.run_fwd()

    def time_ctc_forward(self, *params):
        self.run_fwd()


class CTCGradientError:
    """The largest error of a float32 CTC gradient against torch's float64 gradient
    of the same inputs (each implementation in its own convention, as ``lattice
    bench`` prints it): lattice's probability-space kernels against torch's float32
    ``ctc_loss``. Not a time: asv records the value, so a change of kernels that
    costs accuracy shows in the history."""

    params = (list(SHAPES), ["lattice", "torch"])
    param_names = ["shape", "impl"]
    unit = "max |error|"
    timeout = 300

    def setup(self, shape, impl):
        try:
            import torch  # noqa: F401
        except ImportError:
            raise NotImplementedError("torch is not installed")
        log_probs, targets, _, _ = ctc_problem(shape, "float32")
        from lattice.bench import gradient_errors

        self.errors = gradient_errors(log_probs, targets)

    def track_gradient_error(self, shape, impl):
        return self.errors[impl]


class CTCEngine:
    """CTC forward+backward at the engine level (numpy in, no torch), from the
    targets: the fused kernels (``lattice.ctc_forward_backward``) against the graph
    path that builds the CTC batch first (``lattice.build_batch`` and
    ``lattice.forward_backward``, the banded kernel). The difference is the Python
    and the graph arrays a call no longer makes, most of a small call, and the
    fused kernel's own recursion."""

    params = (list(SHAPES), DTYPES, THREADS, ["fused", "graph"])
    param_names = ["shape", "dtype", "threads", "path"]
    timeout = 300

    def setup(self, shape, dtype, threads, path):
        import lattice

        log_probs, targets, lengths, _ = ctc_problem(shape, dtype)
        set_threads(threads)
        emissions = np.transpose(log_probs, (1, 0, 2))  # (B, T, C) view, as torch's
        if path == "fused":
            def run():
                lattice.ctc_forward_backward(emissions, targets, lengths)
        else:
            def run():
                gb = lattice.build_batch("ctc", list(targets))
                lattice.forward_backward(emissions, gb, lengths)
        self.run = run
        run()

    def time_ctc_engine_forward_backward(self, *params):
        self.run()


class CTCOneUtterance:
    """One utterance (B=1, T=1000, C=64, S=200) at the engine level, float32, two
    threads: what forced alignment and scoring one file call. Before the CPU backend
    kept its workspaces between calls, a fresh 3 MB alpha table faulted in page by
    page at every call (4.4 of the 6.4 ms of a forward-backward here)."""

    params = (["forward_backward", "forward"],)
    param_names = ["call"]

    def setup(self, call):
        import lattice

        if not hasattr(lattice, "ctc_score"):
            raise NotImplementedError("lattice.ctc_score is newer than this commit")
        frames, classes, symbols = (40, 8, 8) if SMOKE else (1000, 64, 200)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, frames, classes)).astype(np.float32)
        x -= np.log(np.exp(x).sum(-1, keepdims=True))
        target = rng.integers(1, classes, (1, symbols))
        set_threads(2)
        fn = lattice.ctc_forward_backward if call == "forward_backward" else lattice.ctc_score
        self.run = lambda: fn(x, target)
        self.run()

    def time_one_utterance(self, call):
        self.run()

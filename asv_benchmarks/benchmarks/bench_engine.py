"""The numpy engine on its own: forward (log, max), forward-backward and Viterbi on
the banded CTC and segmentation graphs, the same CTC graphs forced through the
general CSR kernels, and a random general graph of the same size."""

import numpy as np

import lattice

from .common import (
    DTYPES, GATE, LARGE, SCALING_FRAMES, THREADS, banded_path, ctc_graphs, engine_problem,
    set_threads,
)

GRAPHS = ["ctc", "ctc-general-path", "segmentation", "random-general"]
if GATE:  # the banded path and a general graph
    GRAPHS = ["ctc", "random-general"]


class Engine:
    params = (LARGE, GRAPHS, DTYPES, THREADS)
    param_names = ["shape", "graph", "dtype", "threads"]
    timeout = 300

    def setup(self, shape, graph, dtype, threads):
        self.emissions, self.graphs = engine_problem(shape, graph, dtype)
        self.general = graph == "ctc-general-path"
        set_threads(threads)

    def _call(self, fn, *args, **kwargs):
        with banded_path(not self.general):
            return fn(self.emissions, self.graphs, *args, **kwargs)

    def time_forward_log(self, *params):
        self._call(lattice.forward, semiring="log")

    def time_forward_max(self, *params):
        self._call(lattice.forward, semiring="max")

    def time_forward_backward(self, *params):
        self._call(lattice.forward_backward)

    def peakmem_forward_backward(self, *params):
        self._call(lattice.forward_backward)

    def time_viterbi(self, *params):
        self._call(lattice.viterbi)


class Scaling:
    """Work linear in T stays linear: forward-backward at T = 1000, 4000, 16000."""

    params = (SCALING_FRAMES, DTYPES)
    param_names = ["frames", "dtype"]
    timeout = 300

    def setup(self, frames, dtype):
        rng = np.random.default_rng(2)
        B, C, S = 4, 32, 100
        logits = rng.standard_normal((B, frames, C))
        self.emissions = (logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)).astype(dtype)
        self.graphs = ctc_graphs(rng.integers(1, C, size=(B, S)))
        set_threads(2)

    def time_forward_backward(self, frames, dtype):
        lattice.forward_backward(self.emissions, self.graphs)

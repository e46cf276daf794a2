"""The alignment distribution (lattice.sample, kbest, entropy, token_posteriors) next
to the two passes it is measured against, one Viterbi and one forward-backward, on
the same banded CTC graphs and a random general graph of the same size: the ratios
of one run are the figures of docs/benchmarks.rst."""

import numpy as np

import lattice

from .common import DTYPES, LARGE, THREADS, ctc_graphs, ctc_problem, random_graph_like, set_threads

GRAPHS = ["ctc", "random-general"]


class Distribution:
    params = (LARGE, GRAPHS, DTYPES, THREADS)
    param_names = ["shape", "graph", "dtype", "threads"]
    timeout = 300

    def setup(self, shape, graph, dtype, threads):
        log_probs, targets, _, _ = ctc_problem(shape, dtype)
        self.emissions = np.ascontiguousarray(np.transpose(log_probs, (1, 0, 2)))
        if graph == "ctc":
            self.graphs = ctc_graphs(targets)
        else:
            rng = np.random.default_rng(1)
            S = 2 * targets.shape[1] + 1
            self.graphs = lattice.batch([random_graph_like(S, log_probs.shape[2], 3, rng)
                                         for _ in range(targets.shape[0])])
        set_threads(threads)

    def time_viterbi(self, *params):
        lattice.viterbi(self.emissions, self.graphs)

    def time_forward_backward(self, *params):
        lattice.forward_backward(self.emissions, self.graphs)

    def time_kbest_10(self, *params):
        lattice.kbest(self.emissions, self.graphs, 10)

    def peakmem_kbest_10(self, *params):
        lattice.kbest(self.emissions, self.graphs, 10)

    def time_kbest_100(self, *params):
        lattice.kbest(self.emissions, self.graphs, 100)

    def time_sample_10(self, *params):
        lattice.sample(self.emissions, self.graphs, 10, seed=0)

    def time_sample_100(self, *params):
        lattice.sample(self.emissions, self.graphs, 100, seed=0)

    def time_entropy(self, *params):
        lattice.entropy(self.emissions, self.graphs)

    def time_entropy_gradients(self, *params):
        lattice.entropy(self.emissions, self.graphs, return_gradients=True)

    def peakmem_entropy_gradients(self, *params):
        lattice.entropy(self.emissions, self.graphs, return_gradients=True)

    def time_token_posteriors(self, *params):
        lattice.token_posteriors(self.emissions, self.graphs, onsets=True)

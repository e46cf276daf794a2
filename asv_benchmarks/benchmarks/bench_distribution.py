"""The alignment distribution (lattice.sample, kbest, entropy, token_posteriors) next
to the two passes it is measured against, one Viterbi and one forward-backward, on
the same banded CTC graphs and a random general graph of the same size: the ratios
of one run are the figures of docs/benchmarks.rst."""

import lattice

from .common import DTYPES, LARGE, THREADS, engine_problem, set_threads

GRAPHS = ["ctc", "random-general"]


class Distribution:
    params = (LARGE, GRAPHS, DTYPES, THREADS)
    param_names = ["shape", "graph", "dtype", "threads"]
    timeout = 300

    def setup(self, shape, graph, dtype, threads):
        self.emissions, self.graphs = engine_problem(shape, graph, dtype)
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

"""Denominator graphs shared among examples (issue 18): one graph for the whole batch
("shared"), two graphs for half of it each ("halves", read through
GraphBatch.graph_index), against one copy per example ("copies"). B=32, T=150, random
general graphs of 2,000 states and 20,000 arcs, float32; the time of the engine
passes and the peak memory of building the batch and running forward-backward on
it."""

import numpy as np

import lattice

from .common import SMOKE, THREADS, random_graph_like, set_threads

SIZE, FRAMES, CLASSES, STATES, IN_DEGREE = 32, 150, 64, 2000, 10
if SMOKE:
    SIZE, FRAMES, CLASSES, STATES, IN_DEGREE = 4, 20, 8, 50, 4


def _denominator(seed=2):
    return random_graph_like(STATES, CLASSES, IN_DEGREE, np.random.default_rng(seed))


def _batch(graph, layout, second=None):
    if layout == "shared":
        return lattice.batch([graph] * SIZE)
    if layout == "halves":
        return lattice.batch([graph, second] * (SIZE // 2))
    # what a caller gets who builds the same graph once per example
    return lattice.batch([lattice.Graph(graph.labels, graph.src, graph.dst, graph.weight,
                                        graph.start, graph.final) for _ in range(SIZE)])


class SharedDenominator:
    params = (["shared", "halves", "copies"], THREADS)
    param_names = ["layout", "threads"]
    timeout = 300

    def setup(self, layout, threads):
        self.graph, self.second = _denominator(), _denominator(4)
        self.batch = _batch(self.graph, layout, self.second)
        self.layout = layout
        rng = np.random.default_rng(3)
        self.emissions = np.log(rng.dirichlet(np.ones(CLASSES), size=(SIZE, FRAMES))
                                ).astype(np.float32)
        set_threads(threads)

    def time_build_batch(self, layout, threads):
        _batch(self.graph, layout, self.second)

    def time_forward(self, *params):
        lattice.forward(self.emissions, self.batch)

    def time_forward_backward(self, *params):
        lattice.forward_backward(self.emissions, self.batch)

    def time_viterbi(self, *params):
        lattice.viterbi(self.emissions, self.batch)

    def peakmem_build_and_forward_backward(self, layout, threads):
        lattice.forward_backward(self.emissions, _batch(self.graph, layout, self.second))

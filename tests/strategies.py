"""Hypothesis strategies: small random graphs, emissions, lengths and weight overrides.

The graphs are small enough for :mod:`reference` to enumerate every path (1..5 states,
0..10 arcs, a few frames), and wild enough to hit the corners: self-loops, parallel
arcs, cycles, ``-inf`` weights, states nothing reaches, graphs with no complete path
(``log Z = -inf``), states with no incoming or outgoing arcs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import lattice
from reference import brute_force

NEG_INF = -math.inf


def examples(n):
    """Hypothesis settings for these tests: ``n`` examples, no deadline, and no
    too-slow health check (data generation is the bulk of the time, and the suite may
    share a small machine with other test runs)."""
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


finite_weights = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False, width=64)
# about one in six weights is -inf, one in three exactly 0.0 (the neutral weight)
log_weights = st.one_of(finite_weights, finite_weights, finite_weights, st.just(0.0),
                        st.just(0.0), st.just(NEG_INF))
emission_values = st.floats(-4.0, 4.0, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def graphs(draw, num_classes=None, max_states=5, max_arcs=10, min_states=1):
    """A random :class:`lattice.Graph` whose labels are < ``num_classes``."""
    if num_classes is None:
        num_classes = draw(st.integers(1, 4))
    num_states = draw(st.integers(min_states, max_states))
    state = st.integers(0, num_states - 1)
    labels = draw(st.lists(st.integers(0, num_classes - 1), min_size=num_states,
                           max_size=num_states))
    # half of the graphs get a self-loop on every state (then long paths are common),
    # placed among the other arcs in a random order
    loops = num_states <= max_arcs and draw(st.booleans())
    num_arcs = draw(st.integers(num_states if loops else 0, max_arcs))
    num_random = num_arcs - (num_states if loops else 0)
    src = draw(st.lists(state, min_size=num_random, max_size=num_random))
    dst = draw(st.lists(state, min_size=num_random, max_size=num_random))
    if loops:
        src = list(range(num_states)) + src
        dst = list(range(num_states)) + dst
        order = draw(st.permutations(range(num_arcs)))
        src = [src[i] for i in order]
        dst = [dst[i] for i in order]
    weight = draw(st.none() | st.lists(log_weights, min_size=num_arcs,
                                       max_size=num_arcs))
    # start/final: mostly allowed (0.0 or finite), sometimes forbidden
    start = draw(st.lists(log_weights, min_size=num_states, max_size=num_states))
    final = draw(st.lists(log_weights, min_size=num_states, max_size=num_states))
    tokens = draw(st.none() | st.lists(st.integers(-1, num_states - 1),
                                       min_size=num_states, max_size=num_states))
    return lattice.Graph(labels, src, dst, weight, start, final, tokens=tokens)


def emissions(shape, dtype=np.float64, allow_neg_inf=False):
    """Emission arrays of a fixed shape with values in [-4, 4] (and a few -inf)."""
    elements = emission_values
    if allow_neg_inf:
        # about one value in eight is -inf
        elements = st.one_of([emission_values] * 7 + [st.just(NEG_INF)])
    return hnp.arrays(np.float64, shape, elements=elements).map(
        lambda a: a.astype(dtype)
    )


def lengths(batch_size, frames):
    """``None`` (every example uses all frames) or per-example lengths in [0, T]."""
    return st.none() | hnp.arrays(np.int64, (batch_size,),
                                  elements=st.integers(0, frames))


@dataclass
class Problem:
    """One batched call: emissions, graphs, lengths and optional weight overrides."""

    emissions: np.ndarray  # (B, T, C) float64
    graphs: list
    lengths: np.ndarray | None
    arc_weights: np.ndarray | None = None  # (B, A_max) or (B, T, A_max)
    start_weights: np.ndarray | None = None  # (B, S_max)
    final_weights: np.ndarray | None = None  # (B, S_max)

    @property
    def batch_size(self):
        return self.emissions.shape[0]

    @property
    def frames(self):
        return self.emissions.shape[1]

    @property
    def time_dependent(self):
        return self.arc_weights is not None and self.arc_weights.ndim == 3

    def length(self, b):
        return self.frames if self.lengths is None else int(self.lengths[b])

    def kwargs(self):
        return dict(
            lengths=self.lengths,
            arc_weights=self.arc_weights,
            start_weights=self.start_weights,
            final_weights=self.final_weights,
        )

    def reference(self, b, emissions=None):
        """Brute force of example ``b`` (optionally on other emission values)."""
        e = self.emissions if emissions is None else emissions
        return brute_force(
            self.graphs[b],
            np.asarray(e[b], dtype=np.float64),
            self.length(b),
            arc_weights=None if self.arc_weights is None else self.arc_weights[b],
            start_weights=None if self.start_weights is None else self.start_weights[b],
            final_weights=None if self.final_weights is None else self.final_weights[b],
        )


@st.composite
def problems(
    draw,
    max_batch=4,
    max_frames=5,
    min_frames=1,
    overrides=True,
    time_dependent=None,
    allow_neg_inf_emissions=True,
    max_states=5,
    max_arcs=10,
):
    """A :class:`Problem` of 1..``max_batch`` random graphs.

    ``overrides`` lets arc/start/final weight overrides be drawn (each independently
    present or not); ``time_dependent`` forces (True) or forbids (False) per-frame arc
    weights when arc weights are drawn. Override arrays are drawn whole, so their
    padding (and row t = 0 of per-frame arc weights) holds junk the engine must ignore.
    """
    batch_size = draw(st.integers(1, max_batch))
    frames = draw(st.integers(min_frames, max_frames))
    num_classes = draw(st.integers(1, 4))
    gs = draw(st.lists(graphs(num_classes, max_states=max_states, max_arcs=max_arcs),
                       min_size=batch_size, max_size=batch_size))
    e = draw(emissions((batch_size, frames, num_classes),
                       allow_neg_inf=allow_neg_inf_emissions))
    lens = draw(lengths(batch_size, frames))
    problem = Problem(e, gs, lens)
    if not overrides:
        return problem
    a_max = max(g.num_arcs for g in gs)
    s_max = max(g.num_states for g in gs)
    kind = draw(st.sampled_from(
        {None: ["none", "static", "time"], True: ["time"], False: ["none", "static"]}[
            time_dependent
        ]
    ))
    if kind == "static":
        problem.arc_weights = draw(hnp.arrays(np.float64, (batch_size, a_max),
                                              elements=log_weights))
    elif kind == "time":
        problem.arc_weights = draw(hnp.arrays(np.float64, (batch_size, frames, a_max),
                                              elements=log_weights))
    if draw(st.booleans()):
        problem.start_weights = draw(hnp.arrays(np.float64, (batch_size, s_max),
                                                elements=log_weights))
    if draw(st.booleans()):
        problem.final_weights = draw(hnp.arrays(np.float64, (batch_size, s_max),
                                                elements=log_weights))
    return problem

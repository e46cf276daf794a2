"""Brute-force reference for the lattice engine: enumerate every path of a small graph.

Nothing here uses the library's kernels. A path over ``T`` frames is a start state
``s_0`` and a chain of ``T - 1`` arcs ``a_1 .. a_{T-1}`` with ``src[a_1] = s_0`` and
``src[a_t] = dst[a_{t-1}]``; parallel arcs give distinct paths. Its score is

    start[s_0] + sum_t E[t, labels[s_t]] + sum_t w[t, a_t] + final[s_{T-1}]

(DESIGN.md section 2). ``log Z`` is the logsumexp of all path scores, the best score
their maximum, and every gradient of ``log Z`` is a posterior: the sum, over the paths
that use an input, of ``exp(score - log Z)``. All sums are done with ``math.fsum`` in
float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NEG_INF = -math.inf


def logsumexp(values):
    """Stable logsumexp of an iterable of floats (``-inf`` if empty or all ``-inf``)."""
    values = [float(v) for v in values]
    if not values:
        return NEG_INF
    m = max(values)
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(math.fsum(math.exp(v - m) for v in values))


@dataclass
class Path:
    states: tuple  # (s_0, ..., s_{T-1})
    arcs: tuple  # (a_1, ..., a_{T-1}); arcs[t - 1] enters frame t
    score: float


@dataclass
class Reference:
    """Everything the brute force knows about one example.

    Gradient arrays cover the full emission shape / padded sizes given to
    :func:`brute_force` and are zero past the length and when ``log_z == -inf``.
    """

    log_z: float
    best_score: float
    best_path: Path | None
    paths: list
    emission_grad: np.ndarray  # (T_total, C)
    arc_grad: np.ndarray  # (A,) or (T_total, A) when the arc weights are per frame
    start_grad: np.ndarray  # (S,)
    final_grad: np.ndarray  # (S,)

    @property
    def num_paths(self):
        return len(self.paths)

    @property
    def num_finite_paths(self):
        return sum(1 for p in self.paths if p.score > NEG_INF)


def _weights(graph, arc_weights, start_weights, final_weights):
    """The arc, start and final weights in force: the graph's, or the overrides
    (trimmed of padding). Returns ``(w, time_dependent, start, final)``; with a time
    axis ``w[t, a]`` scores arc ``a`` taken into frame ``t``."""
    num_states, num_arcs = graph.num_states, graph.num_arcs
    time_dependent = arc_weights is not None and np.ndim(arc_weights) == 2
    if arc_weights is None:
        w = np.asarray(graph.weight, dtype=np.float64)
    else:
        w = np.asarray(arc_weights, dtype=np.float64)
        w = w[:, :num_arcs] if time_dependent else w[:num_arcs]
    start = np.asarray(
        graph.start if start_weights is None else start_weights, dtype=np.float64
    )[:num_states]
    final = np.asarray(
        graph.final if final_weights is None else final_weights, dtype=np.float64
    )[:num_states]
    return w, time_dependent, start, final


def enumerate_paths(graph, length):
    """Yield every ``(states, arcs)`` of ``graph`` over ``length`` frames."""
    num_states = graph.num_states
    if length <= 0 or num_states == 0:
        return
    src = [int(v) for v in graph.src]
    dst = [int(v) for v in graph.dst]
    out_arcs = [[] for _ in range(num_states)]
    for a, s in enumerate(src):
        out_arcs[s].append(a)

    def extend(states, arcs):
        if len(states) == length:
            yield tuple(states), tuple(arcs)
            return
        for a in out_arcs[states[-1]]:
            states.append(dst[a])
            arcs.append(a)
            yield from extend(states, arcs)
            states.pop()
            arcs.pop()

    for s0 in range(num_states):
        yield from extend([s0], [])


def brute_force(
    graph,
    emissions,
    length=None,
    arc_weights=None,
    start_weights=None,
    final_weights=None,
):
    """Enumerate every path of ``graph`` over the first ``length`` frames.

    Parameters
    ----------
    graph : lattice.Graph
    emissions : array_like, shape (T_total, C)
        Only the first ``length`` frames are used (all of them by default).
    length : int, optional
    arc_weights : array_like, shape (A,) or (T_total, A), optional
        Replaces ``graph.weight``; with a time axis ``arc_weights[t, a]`` scores arc
        ``a`` taken into frame ``t`` (row 0 unused). Extra trailing entries (padding)
        are ignored.
    start_weights, final_weights : array_like, shape (S,), optional
        Replace ``graph.start`` / ``graph.final``; extra entries are ignored.
    """
    emissions = np.asarray(emissions, dtype=np.float64)
    total_frames, num_classes = emissions.shape
    length = total_frames if length is None else int(length)
    assert 0 <= length <= total_frames
    num_states, num_arcs = graph.num_states, graph.num_arcs
    labels = [int(v) for v in graph.labels]

    w, time_dependent, start, final = _weights(graph, arc_weights, start_weights,
                                               final_weights)

    def arc_score(t, a):
        return float(w[t, a]) if time_dependent else float(w[a])

    paths = []
    for states, arcs in enumerate_paths(graph, length):
        terms = [float(start[states[0]]), float(final[states[-1]])]
        terms += [float(emissions[t, labels[s]]) for t, s in enumerate(states)]
        terms += [arc_score(t, a) for t, a in enumerate(arcs, start=1)]
        if any(v == NEG_INF for v in terms):
            score = NEG_INF
        else:
            score = math.fsum(terms)
        paths.append(Path(states, arcs, score))

    log_z = logsumexp(p.score for p in paths)
    best_path = None
    best_score = NEG_INF
    for p in paths:
        if p.score > best_score:
            best_score, best_path = p.score, p

    # posteriors: collect every contribution, then fsum each cell
    emission_terms = {}
    arc_terms = {}
    start_terms = {}
    final_terms = {}

    def add(table, key, value):
        table.setdefault(key, []).append(value)

    if log_z > NEG_INF:
        for p in paths:
            if p.score == NEG_INF:
                continue
            post = math.exp(p.score - log_z)
            add(start_terms, p.states[0], post)
            add(final_terms, p.states[-1], post)
            for t, s in enumerate(p.states):
                add(emission_terms, (t, labels[s]), post)
            for t, a in enumerate(p.arcs, start=1):
                add(arc_terms, (t, a) if time_dependent else a, post)

    emission_grad = np.zeros((total_frames, num_classes))
    arc_grad = np.zeros((total_frames, num_arcs) if time_dependent else num_arcs)
    start_grad = np.zeros(num_states)
    final_grad = np.zeros(num_states)
    for table, out in (
        (emission_terms, emission_grad),
        (arc_terms, arc_grad),
        (start_terms, start_grad),
        (final_terms, final_grad),
    ):
        for key, values in table.items():
            out[key] = math.fsum(values)

    return Reference(
        log_z=log_z,
        best_score=best_score,
        best_path=best_path,
        paths=paths,
        emission_grad=emission_grad,
        arc_grad=arc_grad,
        start_grad=start_grad,
        final_grad=final_grad,
    )


def path_score(graph, emissions, states, arc_weights=None, start_weights=None,
               final_weights=None, arcs=None):
    """Score of a given state sequence.

    With ``arcs`` (``arcs[t]`` = the arc into frame ``t``, ``arcs[0]`` ignored) the
    score of exactly that path; an arc that does not join ``states[t - 1]`` to
    ``states[t]`` raises AssertionError. Without, the best of any parallel arcs per
    step, and ``-inf`` if two consecutive states are not joined by an arc.
    """
    emissions = np.asarray(emissions, dtype=np.float64)
    num_states, num_arcs = graph.num_states, graph.num_arcs
    w, time_dependent, start, final = _weights(graph, arc_weights, start_weights,
                                               final_weights)
    terms = [float(start[states[0]]), float(final[states[-1]])]
    terms += [float(emissions[t, graph.labels[s]]) for t, s in enumerate(states)]
    for t in range(1, len(states)):
        if arcs is not None:
            a = int(arcs[t])
            assert 0 <= a < num_arcs, f"arc {a} into frame {t} is not an arc"
            assert (graph.src[a], graph.dst[a]) == (states[t - 1], states[t]), (
                f"arc {a} into frame {t} does not join state {states[t - 1]} to "
                f"state {states[t]}"
            )
            candidates = [a]
        else:
            candidates = [
                a
                for a in range(num_arcs)
                if graph.src[a] == states[t - 1] and graph.dst[a] == states[t]
            ]
        if not candidates:
            return NEG_INF
        terms.append(max(float(w[t, a]) if time_dependent else float(w[a])
                         for a in candidates))
    if any(v == NEG_INF for v in terms):
        return NEG_INF
    return math.fsum(terms)


def segments_of(tokens, states):
    """Maximal runs of frames whose states share the same non-negative token."""
    segments = []
    prev = -1
    for t, s in enumerate(states):
        tok = int(tokens[s])
        if tok >= 0 and tok == prev:
            k, begin, _ = segments[-1]
            segments[-1] = (k, begin, t + 1)
        elif tok >= 0:
            segments.append((tok, t, t + 1))
        prev = tok
    return segments


def assert_scores_close(actual, expected, rtol=1e-9, atol=1e-9, err_msg=""):
    """Like ``np.testing.assert_allclose`` but ``-inf`` must match ``-inf`` exactly."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape, err_msg)
    assert not np.isnan(actual).any(), f"NaN in {actual} {err_msg}"
    np.testing.assert_array_equal(
        np.isneginf(actual), np.isneginf(expected), err_msg=f"-inf pattern {err_msg}"
    )
    finite = ~np.isneginf(expected)
    np.testing.assert_allclose(
        actual[finite], expected[finite], rtol=rtol, atol=atol, err_msg=err_msg
    )

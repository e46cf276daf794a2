"""Built-in topologies (plugins/): exact graphs, path counts and scores vs brute force.

Each topology is checked three ways on random small cases: against
``tests/reference.py`` (enumerating the graph's own paths), against an independent
description of its alignments (:func:`alignments`: runs of frames per slot, built
from the topology's definition without any graph), and ``Graph.num_paths`` against
both. ``ctc`` and ``segmentation`` were rewritten on :mod:`lattice.compose`; they
must produce exactly the graphs of the original array implementations, arc order
included (Viterbi breaks ties by arc order).
"""

import itertools
import math

import numpy as np
import pytest

import lattice
from reference import brute_force

NEG = -math.inf


# --------------------------------------------------------------------------------
# the original array implementations of ctc and segmentation
# --------------------------------------------------------------------------------


def original_ctc(target, blank=0):
    target = np.asarray(target, dtype=np.int64)
    K = target.shape[0]
    S = 2 * K + 1
    labels = np.full(S, blank, dtype=np.int64)
    labels[1::2] = target
    tokens = np.full(S, -1, dtype=np.int64)
    tokens[1::2] = np.arange(K)
    states = np.arange(S)
    skip_from = 2 * np.flatnonzero(target[1:] != target[:-1]) + 1
    src = np.concatenate([states, states[:-1], skip_from])
    dst = np.concatenate([states, states[1:], skip_from + 2])
    start = np.full(S, -np.inf)
    start[: min(2, S)] = 0.0
    final = np.full(S, -np.inf)
    final[max(S - 2, 0):] = 0.0
    return lattice.Graph(labels, src, dst, None, start, final, tokens=tokens)


def original_segmentation(target, m=1):
    target = np.asarray(target, dtype=np.int64)
    K = target.shape[0]
    S = K * m
    labels = np.repeat(target, m)
    tokens = np.repeat(np.arange(K), m)
    states = np.arange(S)
    last = states[m - 1 :: m]
    src = np.concatenate([last, states[:-1]])
    dst = np.concatenate([last, states[1:]])
    order = np.lexsort((dst, src))
    start = np.full(S, -np.inf)
    final = np.full(S, -np.inf)
    if S:
        start[0] = 0.0
        final[-1] = 0.0
    return lattice.Graph(labels, src[order], dst[order], None, start, final, tokens=tokens)


@pytest.mark.parametrize("seed", range(40))
def test_ctc_and_segmentation_graphs_unchanged(seed):
    rng = np.random.default_rng(seed)
    K = int(rng.integers(0, 12))
    blank = int(rng.integers(0, 3))
    symbols = [c for c in range(5) if c != blank]
    target = rng.choice(symbols, K).tolist()
    assert lattice.build("ctc", target, blank=blank) == original_ctc(target, blank)
    for m in (1, 2, 3):
        assert lattice.build("segmentation", target, min_frames=m) == \
            original_segmentation(target, m)


def test_long_targets_unchanged():
    target = np.random.default_rng(7).integers(1, 30, 500)
    assert lattice.build("ctc", target) == original_ctc(target)
    assert lattice.build("segmentation", target, min_frames=2) == original_segmentation(target, 2)


# --------------------------------------------------------------------------------
# alignments from the definitions: slots of runs, no graph
# --------------------------------------------------------------------------------


def compositions(n, k):
    if k == 1:
        if n >= 1:
            yield (n,)
        return
    for first in range(1, n - k + 2):
        for rest in compositions(n - first, k - 1):
            yield (first,) + rest


def symbol_slot(label, k=1, m=1, M=None, stay=0.0, advance=0.0):
    """A symbol: k runs (states) of ``label``, >= 1 frame each, m..M frames in all."""
    def options(n):
        if n < max(k, m) or (M is not None and n > M):
            return []
        w = (n - k) * stay + k * advance
        return [((label,) * n, w) for _ in compositions(n, k)]
    return options


def blank_slot(label, required=False):
    """Zero (unless required) or more frames of ``label``."""
    def options(n):
        if n == 0:
            return [] if required else [((), 0.0)]
        return [((label,) * n, 0.0)]
    return options


def gap_slot(wildcard, blank, penalty, required=False):
    """Zero (unless required) or more frames of wildcard (and blank, any order)."""
    def options(n):
        if n == 0:
            return [] if required else [((), 0.0)]
        alphabet = [wildcard] if blank is None else [blank, wildcard]
        return [(seq, penalty * seq.count(wildcard))
                for seq in itertools.product(alphabet, repeat=n)]
    return options


def alignments(slots, T):
    """Every (frame labels, log-weight) that fills T frames slot by slot."""
    out = []

    def fill(i, labels, weight):
        if i == len(slots):
            if len(labels) == T:
                out.append((labels, weight))
            return
        for n in range(0, T - len(labels) + 1):
            for seq, w in slots[i](n):
                fill(i + 1, labels + seq, weight + w)

    fill(0, (), 0.0)
    return out


def ctc_slots(target, blank=0, between="optional"):
    if not target:
        return [blank_slot(blank)]
    slots = [blank_slot(blank)]
    for i, c in enumerate(target):
        if i and between != "none":
            slots.append(blank_slot(blank, required=between == "required"
                                    or target[i] == target[i - 1]))
        slots.append(symbol_slot(c))
    return slots + [blank_slot(blank)]


def hmm_slots(target, states=3, min_frames=1, max_frames=None, stay=0.0, advance=0.0):
    return [symbol_slot(c, states, min_frames, max_frames, stay, advance) for c in target]


def star_slots(target, wildcard, blank=None, penalty=0.0, gaps="everywhere"):
    gap = gap_slot(wildcard, blank, penalty)
    if not target:
        return [gap]
    slots = [gap]
    for i, c in enumerate(target):
        if i:
            repeat = blank is not None and target[i] == target[i - 1]
            if gaps == "everywhere":
                slots.append(gap_slot(wildcard, blank, penalty, required=repeat))
            elif blank is not None:
                slots.append(blank_slot(blank, required=repeat))
        slots.append(symbol_slot(c))
    return slots + [gap]


def check_topology(g, slots, num_classes, seed, T_max=7, unique_labellings=False):
    """num_paths, forward (log, max) and brute force agree with the alignments.

    With ``unique_labellings``, also check that no two alignments label the frames
    the same way (CTC: a labelling determines its alignment)."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((T_max, num_classes))
    for T in range(1, T_max + 1):
        ali = alignments(slots, T)
        scores = [w + math.fsum(e[t, c] for t, c in enumerate(labels)) for labels, w in ali]
        assert g.num_paths(T) == len(ali), T
        ref = brute_force(g, e, T)
        assert ref.num_finite_paths == len(ali), T
        log_z = lattice.forward(e[None, :T], [g])[0]
        best = lattice.forward(e[None, :T], [g], semiring="max")[0]
        if not ali:
            assert log_z == NEG and best == NEG and ref.log_z == NEG
            continue
        m = max(scores)
        expected = m + math.log(math.fsum(math.exp(s - m) for s in scores))
        assert log_z == pytest.approx(expected, rel=1e-9, abs=1e-9), T
        assert ref.log_z == pytest.approx(expected, rel=1e-9, abs=1e-9), T
        assert best == pytest.approx(m, rel=1e-9, abs=1e-9), T
        assert ref.best_score == pytest.approx(m, rel=1e-9, abs=1e-9), T
        if unique_labellings:
            assert len({labels for labels, _ in ali}) == len(ali), T


def random_target(rng, max_len, symbols):
    return rng.choice(symbols, int(rng.integers(0, max_len + 1))).tolist()


# --------------------------------------------------------------------------------
# each topology against brute force
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("between", ["optional", "required", "none"])
@pytest.mark.parametrize("seed", range(6))
def test_ctc_variants_brute_force(between, seed):
    rng = np.random.default_rng(seed)
    blank = int(rng.integers(0, 3))
    target = random_target(rng, 3, [c for c in range(3) if c != blank])
    g = lattice.build("ctc", target, blank=blank, between=between)
    check_topology(g, ctc_slots(target, blank, between), 3, seed,
                   unique_labellings=between != "none")


@pytest.mark.parametrize("seed", range(6))
def test_segmentation_brute_force(seed):
    rng = np.random.default_rng(seed)
    target = random_target(rng, 3, [0, 1, 2])
    m = int(rng.integers(1, 3))
    g = lattice.build("segmentation", target, min_frames=m)
    check_topology(g, hmm_slots(target, 1, m), 3, seed)


@pytest.mark.parametrize("seed", range(10))
def test_hmm_brute_force(seed):
    rng = np.random.default_rng(seed)
    target = random_target(rng, 3, [0, 1, 2])
    states = int(rng.integers(1, 4))
    m = int(rng.integers(1, 4))
    M = None if rng.random() < 0.4 else max(states, m) + int(rng.integers(0, 3))
    stay, advance = rng.choice([0.0, -0.5, 0.7], 2).tolist()
    g = lattice.build("hmm", target, states=states, min_frames=m, max_frames=M,
                      stay=stay, advance=advance)
    check_topology(g, hmm_slots(target, states, m, M, stay, advance), 3, seed)


@pytest.mark.parametrize("blank", [None, 0])
@pytest.mark.parametrize("gaps", ["everywhere", "edges"])
@pytest.mark.parametrize("seed", range(4))
def test_star_brute_force(blank, gaps, seed):
    rng = np.random.default_rng(seed)
    wildcard = 3
    target = random_target(rng, 3, [1, 2])
    penalty = float(rng.choice([0.0, -0.7]))
    g = lattice.build("star", target, wildcard=wildcard, blank=blank, penalty=penalty,
                      gaps=gaps)
    check_topology(g, star_slots(target, wildcard, blank, penalty, gaps), 4, seed, T_max=6,
                   unique_labellings=blank is not None)


# --------------------------------------------------------------------------------
# structure and documented facts
# --------------------------------------------------------------------------------


def test_ctc_variant_structure():
    target = [1, 2, 2, 3]
    req = lattice.build("ctc", target, between="required")
    assert req.labels.tolist() == [0, 1, 0, 2, 0, 2, 0, 3, 0]
    assert not any(d - s == 2 for s, d in zip(req.src.tolist(), req.dst.tolist()))
    assert req.num_paths(6) == 0 and req.num_paths(7) == 1  # K + (K - 1) blanks
    none = lattice.build("ctc", target, between="none")
    assert none.labels.tolist() == [0, 1, 2, 2, 3, 0]
    assert none.tokens.tolist() == [-1, 0, 1, 2, 3, -1]
    assert np.flatnonzero(none.start > NEG).tolist() == [0, 1]
    assert np.flatnonzero(none.final > NEG).tolist() == [4, 5]
    for between in ("required", "none"):
        assert lattice.build("ctc", [], between=between) == lattice.build("ctc", [])
    assert lattice.build("ctc", target, between="optional") == lattice.build("ctc", target)


@pytest.mark.parametrize("between, exc", [("skip", ValueError), (None, ValueError),
                                          (True, ValueError), ("Optional", ValueError)])
def test_ctc_bad_between(between, exc):
    with pytest.raises(exc, match="between"):
        lattice.build("ctc", [1, 2], between=between)


@pytest.mark.parametrize("K, k", [(1, 1), (2, 2), (3, 3), (4, 2)])
def test_hmm_count_formula(K, k):
    g = lattice.build("hmm", list(range(1, K + 1)), states=k)
    assert g.num_states == K * k
    assert g.tokens.tolist() == [i for i in range(K) for _ in range(k)]
    for T in (1, 5, 9, 40):
        assert g.num_paths(T) == (math.comb(T - 1, K * k - 1) if T >= K * k else 0)


def test_hmm_defaults_and_weights():
    g = lattice.build("hmm", [5, 6])
    assert g.labels.tolist() == [5, 5, 5, 6, 6, 6]
    # stay = log p, advance = log(1 - p): a proper HMM; all paths of T frames of a
    # single symbol with 1 state sum to p^(T-1) (1 - p)
    p = 0.3
    g = lattice.build("hmm", [0], states=1, stay=math.log(p), advance=math.log(1 - p))
    for T in (1, 2, 5):
        assert lattice.forward(np.zeros((1, T, 1)), [g])[0] == pytest.approx(
            (T - 1) * math.log(p) + math.log(1 - p))
    assert lattice.build("hmm", []).num_states == 0
    assert lattice.build("hmm", [2, 2], states=1) == lattice.build("segmentation", [2, 2])


@pytest.mark.parametrize(
    "options, exc, match",
    [
        (dict(states=0), ValueError, "states"),
        (dict(states=1.0), TypeError, "states"),
        (dict(min_frames=0), ValueError, "min_frames"),
        (dict(max_frames=2), ValueError, "max_frames"),  # below states=3
        (dict(states=1, min_frames=4, max_frames=3), ValueError, "max_frames"),
        (dict(max_frames="4"), TypeError, "max_frames"),
        (dict(stay=float("nan")), ValueError, "stay"),
        (dict(advance=math.inf), ValueError, "advance"),
        (dict(advance="x"), TypeError, "advance"),
        (dict(blank=0), TypeError, "blank"),
    ],
)
def test_hmm_bad_options(options, exc, match):
    with pytest.raises(exc, match=match):
        lattice.build("hmm", [1, 2], **options)


def test_star_structure():
    g = lattice.build("star", [1, 2], wildcard=9)
    assert g.labels.tolist() == [9, 1, 9, 2, 9]
    assert g.tokens.tolist() == [-1, 0, -1, 1, -1]
    g = lattice.build("star", [1, 1], wildcard=9, blank=0)
    assert g.labels.tolist() == [0, 9, 1, 0, 9, 1, 0, 9]
    # between two equal symbols there is no skip arc
    assert (2, 5) not in set(zip(g.src.tolist(), g.dst.tolist()))
    g = lattice.build("star", [1, 2], wildcard=9, gaps="edges")
    assert g.labels.tolist() == [9, 1, 2, 9]
    g = lattice.build("star", [1, 2], wildcard=9, blank=0, gaps="edges")
    assert g.labels.tolist() == [0, 9, 1, 0, 2, 0, 9]
    assert lattice.build("star", [], wildcard=4).labels.tolist() == [4]


def test_star_absorbs_untranscribed_frames():
    """Transcribed [1, 2] inside a longer utterance: the wildcard takes the rest."""
    T, C = 12, 5
    log_probs = np.full((T, C), math.log(0.01))
    truth = [3, 3, 1, 1, 4, 4, 4, 2, 2, 3, 3, 3]  # 3 and 4 are untranscribed
    for t, c in enumerate(truth):
        log_probs[t, c] = math.log(0.96)
    emissions = np.concatenate([log_probs, np.zeros((T, 1))], axis=1)[None]
    g = lattice.build("star", [1, 2], wildcard=C, penalty=math.log(0.5))
    ali = lattice.viterbi(emissions, [g])
    assert ali.segments(0) == [(0, 2, 4), (1, 7, 9)]
    # without the wildcard the same target must cover every frame
    seg = lattice.build("segmentation", [1, 2])
    assert lattice.forward(emissions, [g])[0] > lattice.forward(emissions, [seg])[0] + 10


@pytest.mark.parametrize(
    "options, exc, match",
    [
        (dict(wildcard=-1), ValueError, "wildcard"),
        (dict(wildcard=2.0), TypeError, "wildcard"),
        (dict(wildcard=None), TypeError, "wildcard"),
        (dict(wildcard=1), ValueError, "wildcard"),  # in the target
        (dict(wildcard=5, blank=2), ValueError, "blank"),  # in the target
        (dict(wildcard=5, blank=5), ValueError, "blank"),
        (dict(wildcard=5, blank=-1), ValueError, "blank"),
        (dict(wildcard=5, penalty=-math.inf), ValueError, "penalty"),
        (dict(wildcard=5, penalty=float("nan")), ValueError, "penalty"),
        (dict(wildcard=5, penalty="1"), TypeError, "penalty"),
        (dict(wildcard=5, gaps="between"), ValueError, "gaps"),
    ],
)
def test_star_bad_options(options, exc, match):
    with pytest.raises(exc, match=match):
        lattice.build("star", [1, 2], **options)


def test_star_needs_wildcard():
    with pytest.raises(TypeError, match="wildcard"):
        lattice.build("star", [1, 2])


@pytest.mark.parametrize("name", ["hmm", "star"])
@pytest.mark.parametrize("target, exc", [([1, -1], ValueError), ([1.5], TypeError),
                                         ([[1]], ValueError)])
def test_new_builders_check_target(name, target, exc):
    options = {"wildcard": 7} if name == "star" else {}
    with pytest.raises(exc, match="target"):
        lattice.build(name, target, **options)


def test_all_builtins_registered_through_entry_points():
    names = set(lattice.available_graphs())
    assert {"ctc", "segmentation", "hmm", "star"} <= names
    view = lattice.registry.registered()
    assert view["hmm"] == "lattice_plugins.hmm:hmm"
    assert view["star"] == "lattice_plugins.star:star"


def test_builders_train_through_torch():
    """Every built-in topology gives finite, differentiable losses in lattice_score."""
    torch = pytest.importorskip("torch")
    from lattice.torch import lattice_score

    graphs = [
        lattice.build("ctc", [1, 2]),
        lattice.build("ctc", [1, 1], between="required"),
        lattice.build("ctc", [2], between="none"),
        lattice.build("segmentation", [1, 2], min_frames=2),
        lattice.build("hmm", [1, 2], states=2, max_frames=4),
        lattice.build("star", [1, 2], wildcard=3, blank=0, penalty=-1.0),
    ]
    x = torch.randn(len(graphs), 8, 4, dtype=torch.float64, requires_grad=True)
    scores = lattice_score(x.log_softmax(-1), graphs)
    assert torch.isfinite(scores).all()
    scores.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

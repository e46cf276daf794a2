"""lattice.compose: units, combinators, chain, compilation to graphs.

The semantics are checked against an independent reference: a composition is
mirrored by a *spec* tree, and :func:`derivations` enumerates the spec's language
directly (every way to produce a frame labelling, with its log-weight) without
building any graph. A compiled graph must score every emission matrix like the
logsumexp (log semiring) / max (max semiring) over the derivations of its length.
"""

import gc
import itertools
import math
import pathlib
import re
import weakref

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lattice
from lattice import compose as C
from reference import brute_force, enumerate_paths
from strategies import examples

NEG = -math.inf


# --------------------------------------------------------------------------------
# reference semantics: the language of a spec, enumerated directly
# --------------------------------------------------------------------------------


def compositions(n, k):
    """Every tuple of k positive ints summing to n."""
    if k == 1:
        if n >= 1:
            yield (n,)
        return
    for first in range(1, n - k + 2):
        for rest in compositions(n - first, k - 1):
            yield (first,) + rest


def derivations(spec, max_len):
    """Every derivation of ``spec`` up to ``max_len`` frames: list of (labels, weight).

    A graph cannot hold several ways of using no frame: a unit passed over in several
    ways (a union of optional units, ...) has one skip weight, the log-sum of the ways.
    So at every node the empty derivations are merged into one, which changes no
    log-semiring score and makes max-semiring scores and path counts exact too.
    """
    out = _derivations(spec, max_len)
    empty = [w for labels, w in out if not labels]
    if len(empty) > 1:
        m = max(empty)
        merged = m if m == NEG else m + math.log(math.fsum(math.exp(w - m) for w in empty))
        out = [d for d in out if d[0]] + [((), merged)]
    return out


def _derivations(spec, max_len):
    kind = spec[0]
    if kind in ("symbol", "blank"):
        _, label, k, m, M, stay, advance = spec
        out = []
        hi = max_len if M is None else min(M, max_len)
        for n in range(max(m, k), hi + 1):
            for _ in compositions(n, k):
                out.append(((label,) * n, (n - k) * stay + k * advance))
        return out
    if kind == "concat":
        out = [((), 0.0)]
        for child in spec[1]:
            parts = derivations(child, max_len)
            out = [(a + b, wa + wb) for a, wa in out for b, wb in parts
                   if len(a) + len(b) <= max_len]
        return out
    if kind == "union":
        return [d for child in spec[1] for d in derivations(child, max_len)]
    if kind == "optional":
        return derivations(spec[1], max_len) + [((), spec[2])]
    if kind == "weighted":
        return [(labels, w + spec[2]) for labels, w in derivations(spec[1], max_len)]
    if kind == "nonempty":  # the spec without its empty derivations (skip removed)
        return [(labels, w) for labels, w in derivations(spec[1], max_len) if labels]
    if kind == "repeat":
        _, child, lo, hi = spec
        if hi is None:
            hi = max_len  # the child is never empty, so no more copies fit
        if nullable(child):
            # "lo copies, then up to hi - lo more": with an optional child the number
            # of copies is ambiguous, and the graph nests the optional copies
            # (u u (u (u)?)?), whose empty ways merge at each level
            tail = None
            for _ in range(hi - lo):
                tail = ("optional", child if tail is None else ("concat", [child, tail]), 0.0)
            return _derivations(("concat", [child] * lo + ([tail] if tail else [])), max_len)
        return [d for n in range(lo, hi + 1)
                for d in derivations(("concat", [child] * n), max_len)]
    raise AssertionError(kind)


def build(spec):
    """The Unit a spec describes, through the public combinators."""
    kind = spec[0]
    if kind == "symbol":
        _, label, k, m, M, stay, advance = spec
        return C.symbol(label, k, min_frames=m, max_frames=M, stay=stay, advance=advance)
    if kind == "blank":
        _, label, k, m, M, stay, advance = spec
        return C.blank(label, states=k, min_frames=m, max_frames=M, stay=stay,
                       advance=advance)
    if kind == "concat":
        return C.concat(*[build(c) for c in spec[1]])
    if kind == "union":
        return C.union(*[build(c) for c in spec[1]])
    if kind == "optional":
        return C.optional(build(spec[1]), spec[2])
    if kind == "weighted":
        return C.weighted(build(spec[1]), spec[2])
    if kind == "repeat":
        return C.repeat(build(spec[1]), spec[2], spec[3])
    raise AssertionError(kind)


def nullable(spec):
    return any(not labels for labels, _ in derivations(spec, 0))


def reference_scores(spec, emissions):
    """(log Z, best, count) per length T = 1..len(emissions), from the derivations."""
    T_max = emissions.shape[0]
    by_len = {}
    for labels, w in derivations(spec, T_max):
        if labels:
            score = w + sum(emissions[t, c] for t, c in enumerate(labels))
            by_len.setdefault(len(labels), []).append(score)
    out = []
    for T in range(1, T_max + 1):
        scores = by_len.get(T, [])
        if not scores:
            out.append((NEG, NEG, 0))
        else:
            m = max(scores)
            out.append((m + math.log(math.fsum(math.exp(s - m) for s in scores)), m,
                        len(scores)))
    return out


def check_against_reference(spec, unit=None, T_max=6, seed=0, num_classes=3, graph=None):
    """Compare the graph of ``unit`` (default: built from ``spec``), or ``graph``, with
    the reference scores of ``spec`` for every length 1..T_max."""
    if graph is None:
        graph = (build(spec) if unit is None else unit).to_graph()
    g = graph
    e = np.random.default_rng(seed).standard_normal((T_max, num_classes))
    ref = reference_scores(spec, e)
    lengths = np.arange(1, T_max + 1)
    em = np.broadcast_to(e, (T_max, T_max, num_classes))
    log_z = lattice.forward(em, g, lengths=lengths)
    best = lattice.forward(em, g, lengths=lengths, semiring="max")
    for T, (rz, rb, count) in zip(lengths, ref):
        assert g.num_paths(int(T)) == count, (spec, T)
        if rz == NEG:
            assert log_z[T - 1] == NEG and best[T - 1] == NEG, (spec, T)
        else:
            assert log_z[T - 1] == pytest.approx(rz, rel=1e-9, abs=1e-9), (spec, T)
            assert best[T - 1] == pytest.approx(rb, rel=1e-9, abs=1e-9), (spec, T)
    return g


def sym(label, k=1, m=1, M=None, stay=0.0, advance=0.0):
    return ("symbol", label, k, m, M, stay, advance)


def blk(label, k=1, m=1, M=None, stay=0.0, advance=0.0):
    return ("blank", label, k, m, M, stay, advance)


# --------------------------------------------------------------------------------
# symbol and blank
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("m", [1, 2, 4])
@pytest.mark.parametrize("M", [None, 4, 6])
def test_symbol_durations_exact(k, m, M):
    if M is not None and M < max(k, m):
        with pytest.raises(ValueError, match="max_frames"):
            C.symbol(1, k, min_frames=m, max_frames=M)
        return
    g = C.symbol(1, k, min_frames=m, max_frames=M).to_graph()
    assert np.all(g.labels == 1) and np.all(g.tokens == 0)
    for T in range(1, 9):
        fits = T >= max(k, m) and (M is None or T <= M)
        assert g.num_paths(T) == (math.comb(T - 1, k - 1) if fits else 0), (k, m, M, T)
        # every path: k runs in order, each >= 1 frame (state ids are j-major)
        paths = [p for p, _ in enumerate_paths(g, T)
                 if g.start[p[0]] > NEG and g.final[p[-1]] > NEG]
        assert len(paths) == g.num_paths(T)


def test_symbol_weights_and_structure():
    u = C.symbol(5, states=2, stay=-0.5, advance=-1.0)
    assert u.labels.tolist() == [5, 5] and u.tokens.tolist() == [0, 0]
    assert u.entry.tolist() == [0.0, NEG] and u.exit.tolist() == [NEG, -1.0]
    assert sorted(zip(u.src.tolist(), u.dst.tolist(), u.weight.tolist())) == [
        (0, 0, -0.5), (0, 1, -1.0), (1, 1, -0.5)]
    assert not u.is_optional and not u.is_template and u.num_tokens == 1
    check_against_reference(sym(1, 2, 1, None, -0.5, -1.0))
    check_against_reference(sym(2, 2, 3, 5, 0.25, -0.75))


def test_segmentation_shape_of_min_frames():
    # k = 1, m = 3: a chain of 3 states, only the last loops (the segmentation grid)
    u = C.symbol(4, min_frames=3)
    assert sorted(zip(u.src.tolist(), u.dst.tolist())) == [(0, 1), (1, 2), (2, 2)]


def test_blank_has_no_token():
    b = C.blank(0)
    assert b.tokens.tolist() == [-1] and b.num_tokens == 0
    assert C.blank(0, states=2).tokens.tolist() == [-1, -1]
    with pytest.raises(TypeError, match="token"):
        C.blank(0, token=True)
    with pytest.raises(TypeError, match="SYMBOL"):
        C.blank(C.SYMBOL)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(label=-1), ValueError, "label"),
        (dict(label=1.0), TypeError, "label"),
        (dict(label=True), TypeError, "label"),
        (dict(label="a"), TypeError, "label"),
        (dict(label=1, states=0), ValueError, "states"),
        (dict(label=1, states=2.0), TypeError, "states"),
        (dict(label=1, min_frames=0), ValueError, "min_frames"),
        (dict(label=1, min_frames=None), TypeError, "min_frames"),
        (dict(label=1, max_frames=0), ValueError, "max_frames"),
        (dict(label=1, max_frames=1.5), TypeError, "max_frames"),
        (dict(label=1, min_frames=3, max_frames=2), ValueError, "max_frames"),
        (dict(label=1, states=3, max_frames=2), ValueError, "max_frames"),
        (dict(label=1, stay=float("nan")), ValueError, "stay"),
        (dict(label=1, stay="0"), TypeError, "stay"),
        (dict(label=1, advance=math.inf), ValueError, "advance"),
        (dict(label=1, token=1), TypeError, "token"),
    ],
)
def test_symbol_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        C.symbol(**kwargs)


# --------------------------------------------------------------------------------
# combinators against the reference
# --------------------------------------------------------------------------------


def test_concat_arcs_and_tokens():
    g = C.concat(C.symbol(1), C.blank(0), C.symbol(2)).to_graph()
    assert g.tokens.tolist() == [0, -1, 1]
    assert list(zip(g.src.tolist(), g.dst.tolist())) == [
        (0, 0), (1, 1), (2, 2), (0, 1), (1, 2)]
    assert C.concat([C.symbol(1), C.symbol(2)]).num_states == 2  # one iterable
    assert (C.symbol(1) + C.symbol(2) + C.symbol(3)).to_graph().tokens.tolist() == [0, 1, 2]


def test_concat_over_optional_parts():
    spec = ("concat", [sym(1), ("optional", sym(2), -0.3), ("optional", sym(0), 0.2),
                       sym(1)])
    g = check_against_reference(spec, T_max=6)
    # part 0 reaches part 3 over both optional parts, with both skip weights
    arcs = {(s, d): w for s, d, w in zip(g.src.tolist(), g.dst.tolist(), g.weight.tolist())}
    assert arcs[(0, 3)] == pytest.approx(-0.1)


def test_concat_of_nothing_and_of_one():
    empty = C.concat()
    assert empty.num_states == 0 and empty.skip == 0.0 and empty.is_optional
    g = empty.to_graph()
    assert g.num_states == 0 and g.num_paths(3) == 0
    u = C.symbol(3)
    assert C.concat(u) is u
    # the empty unit is neutral
    assert (C.symbol(1) + empty + C.symbol(2)).to_graph() == (
        C.symbol(1) + C.symbol(2)).to_graph()


def test_optional_at_the_edges_gives_start_and_final():
    g = (C.optional(C.blank(0), -1.0) + C.symbol(1) + C.optional(C.blank(0))).to_graph()
    assert g.start.tolist() == [0.0, -1.0, NEG]
    assert g.final.tolist() == [NEG, 0.0, 0.0]


def test_union_pronunciations():
    spec = ("union", [("concat", [sym(1), sym(2)]), ("weighted", sym(0, 2), -0.7)])
    g = check_against_reference(spec)
    assert g.tokens.tolist() == [0, 1, 0, 0]
    with pytest.raises(ValueError, match="at least one"):
        C.union()
    u = C.symbol(1)
    assert C.union(u) is u


def test_union_of_optional_units_log_adds_skips():
    u = C.union(C.optional(C.symbol(1), -1.0), C.optional(C.symbol(2), -2.0))
    assert u.skip == pytest.approx(np.logaddexp(-1.0, -2.0))
    spec = ("concat", [sym(0), ("union", [("optional", sym(1), -1.0),
                                          ("optional", sym(2), -2.0)]), sym(0)])
    check_against_reference(spec)


@pytest.mark.parametrize("lo, hi", [(0, 1), (1, 1), (1, 3), (2, 3), (0, 2), (0, None),
                                    (1, None), (3, None)])
def test_repeat(lo, hi):
    spec = ("repeat", sym(1, 1, 1, 2), lo, hi)
    check_against_reference(spec, T_max=7)
    spec = ("concat", [sym(0), ("repeat", ("union", [sym(1), sym(2, 2)]), lo, hi), sym(0)])
    check_against_reference(spec, T_max=7)


def test_repeat_tokens():
    assert C.repeat(C.symbol(1), 2, 3).to_graph().tokens.tolist() == [0, 1, 2]
    # the looping copy keeps its positions on every pass
    assert C.repeat(C.symbol(1), 2).to_graph().tokens.tolist() == [0, 1]


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((C.symbol(1), -1), ValueError, "min_count"),
        ((C.symbol(1), 1.0), TypeError, "min_count"),
        ((C.symbol(1), 2, 1), ValueError, "max_count"),
        ((C.symbol(1), 0, 0), ValueError, "max_count"),
        ((C.symbol(1), 1, "2"), TypeError, "max_count"),
        ((C.optional(C.symbol(1)),), ValueError, "optional"),
        ((C.concat(),), ValueError, "no states"),
        (("unit",), TypeError, "unit"),
    ],
)
def test_repeat_bad_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        C.repeat(*args)


def test_repeat_of_optional_with_bound_is_fine():
    check_against_reference(("repeat", ("optional", sym(1), 0.0), 1, 2))


def test_weighted_and_optional_weights():
    u = C.weighted(C.optional(C.symbol(2), -1.0), 0.5)
    assert u.entry.tolist() == [0.5] and u.skip == -0.5
    check_against_reference(("concat", [sym(1), ("weighted", ("optional", sym(2), -1.0), 0.5),
                                        sym(1)]))
    for func in (C.weighted, C.optional):
        with pytest.raises(ValueError, match="weight"):
            func(C.symbol(1), float("nan"))
        with pytest.raises(TypeError, match="weight"):
            func(C.symbol(1), "1")
        with pytest.raises(TypeError, match="unit"):
            func(3, 0.0)


def test_operators():
    a, b = C.symbol(1), C.symbol(2)
    assert (a + b).to_graph() == C.concat(a, b).to_graph()
    assert (a | b).to_graph() == C.union(a, b).to_graph()
    with pytest.raises(TypeError):
        a + 1
    with pytest.raises(TypeError):
        a | "b"
    with pytest.raises(TypeError, match=r"units\[1\]"):
        C.concat(a, 2)


def test_concat_is_associative_in_scores():
    parts = [sym(1), ("optional", sym(2), -0.2), ("optional", sym(0), 0.1), sym(2, 2)]
    units = [build(p) for p in parts]
    left = ((units[0] + units[1]) + units[2]) + units[3]
    right = units[0] + (units[1] + (units[2] + units[3]))
    flat = C.concat(*units)
    for u in (left, right, flat):
        check_against_reference(("concat", parts), unit=u)
    assert left.to_graph(sort_arcs=True) == flat.to_graph(sort_arcs=True)
    assert right.to_graph(sort_arcs=True) == flat.to_graph(sort_arcs=True)


# hypothesis: random compositions ---------------------------------------------------

leaf_specs = st.builds(
    lambda label, k, m, extra, stay, advance: sym(
        label, k, m, None if extra is None else max(k, m) + extra, stay, advance),
    st.integers(0, 2), st.integers(1, 2), st.integers(1, 2),
    st.none() | st.integers(0, 2), st.sampled_from([0.0, -0.5, 0.25]),
    st.sampled_from([0.0, -0.3]),
)
weights = st.sampled_from([0.0, -0.4, 0.3])


def extend(children):
    return st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda c: ("concat", c)),
        st.lists(children, min_size=2, max_size=3).map(lambda c: ("union", c)),
        st.tuples(children, weights).map(lambda t: ("optional", t[0], t[1])),
        st.tuples(children, weights).map(lambda t: ("weighted", t[0], t[1])),
        st.tuples(children, st.integers(0, 2), st.integers(0, 2)).map(
            lambda t: ("repeat", t[0], t[1], max(t[1], 1) + t[2])),
    )


specs = st.recursive(leaf_specs, extend, max_leaves=5)


@given(specs, st.integers(0, 2**16))
@examples(40)
def test_random_compositions_match_reference(spec, seed):
    check_against_reference(spec, T_max=5, seed=seed)


@given(specs.filter(lambda s: not nullable(s)), st.integers(0, 2), st.integers(0, 2**16))
@examples(20)
def test_random_unbounded_repeat_matches_reference(spec, lo, seed):
    check_against_reference(("concat", [sym(0), ("repeat", spec, lo, None)]), T_max=5,
                            seed=seed)


@given(specs, st.integers(0, 2**16))
@examples(20)
def test_random_compositions_brute_force(spec, seed):
    """Graph path counts and scores equal tests/reference.py's enumeration."""
    g = build(spec).to_graph()
    e = np.random.default_rng(seed).standard_normal((4, 3))
    for T in (1, 3, 4):
        ref = brute_force(g, e, T)
        assert g.num_paths(T) == ref.num_finite_paths
        got = lattice.forward(e[None, :T], [g])[0]
        if ref.log_z == NEG:
            assert got == NEG
        else:
            assert got == pytest.approx(ref.log_z, rel=1e-9, abs=1e-9)


# --------------------------------------------------------------------------------
# chain
# --------------------------------------------------------------------------------


def chain_spec(target, template_k=1, between=None, leading=None, trailing=None,
               separate_repeats=False):
    """The concat spec chain() stands for (template: sym(SYMBOL, template_k))."""
    if not target:
        return leading or trailing or ("concat", [])
    parts = [] if leading is None else [leading]
    for i, c in enumerate(target):
        if i and between is not None:
            forced = separate_repeats and target[i] == target[i - 1]
            parts.append(("nonempty", between) if forced else between)
        parts.append(sym(c, template_k))
    if trailing is not None:
        parts.append(trailing)
    return ("concat", parts)


def _spec_build(spec):
    return None if spec is None else build(spec)


@pytest.mark.parametrize("target", [[], [1], [1, 2], [2, 2], [1, 1, 2, 1], [2, 1, 2, 2, 2]])
@pytest.mark.parametrize("variant", ["plain", "ctc", "required", "edges", "hmm2", "gap"])
def test_chain_matches_reference(target, variant):
    opt_blank = ("optional", blk(0), 0.0)
    blank_unit = C.optional(C.blank(0))
    cfg = {
        "plain": dict(),
        "ctc": dict(between=opt_blank, leading=opt_blank, trailing=opt_blank,
                    separate_repeats=True),
        "required": dict(between=blk(0), leading=opt_blank, trailing=opt_blank),
        "edges": dict(leading=opt_blank, trailing=opt_blank),
        "hmm2": dict(template_k=2, between=("optional", blk(0, 1, 1, 2), -0.5),
                     separate_repeats=True),
        "gap": dict(between=("optional", ("weighted", blk(0, 1, 1, None, -0.2), -0.2), 0.0),
                    leading=("optional", blk(0), -1.0)),
    }[variant]
    k = cfg.pop("template_k", 1)
    spec = chain_spec(list(target), k, **cfg)
    kwargs = {name: _spec_build(cfg.get(name)) for name in ("between", "leading", "trailing")}
    kwargs = {name: (blank_unit if cfg.get(name) == opt_blank else u)
              for name, u in kwargs.items()}
    unit = C.chain(target, C.symbol(C.SYMBOL, k), separate_repeats=cfg.get(
        "separate_repeats", False), **kwargs)
    g = check_against_reference(spec, unit=unit, T_max=7)
    # the same through a callable (no template): identical graph
    by_callable = C.chain(target, lambda c: C.symbol(c, k), separate_repeats=cfg.get(
        "separate_repeats", False), **kwargs)
    assert by_callable.to_graph() == g
    # tokens: symbol i has token i, everything else -1
    if target:
        assert sorted(set(g.tokens.tolist()) - {-1}) == list(range(len(target)))
        assert all(g.labels[s] == target[g.tokens[s]] for s in range(g.num_states)
                   if g.tokens[s] >= 0)


def test_chain_default_unit_and_empty_target():
    g = C.chain([4, 4, 1]).to_graph(sort_arcs=True)
    assert g == lattice.build("segmentation", [4, 4, 1])
    b = C.optional(C.blank(0))
    assert C.chain([], leading=b, trailing=C.blank(3)) is b
    assert C.chain([], trailing=b) is b
    assert C.chain([]).num_states == 0
    assert C.chain(np.array([], dtype=np.int64)).num_states == 0


def test_chain_with_mapping_lexicon():
    lexicon = {7: C.symbol(1) + C.symbol(2), 8: C.symbol(3) | C.symbol(4)}
    unit = C.chain([7, 8, 7], lexicon, between=C.optional(C.blank(0)))
    g = unit.to_graph()
    assert g.labels.tolist() == [1, 2, 0, 3, 4, 0, 1, 2]
    # positions: word 0 spans 2 tokens, word 1 one (alternatives share it), word 2 two
    assert g.tokens.tolist() == [0, 1, -1, 2, 2, -1, 3, 4]
    with pytest.raises(ValueError, match=r"target\[1\] = 9"):
        C.chain([7, 9], lexicon)


def test_chain_template_with_fixed_labels_and_several_holes():
    # each symbol is "onset (label 9), then the symbol twice"
    template = C.symbol(9, token=False) + C.symbol(C.SYMBOL) + C.symbol(C.SYMBOL)
    g = C.chain([1, 2], template).to_graph()
    assert g.labels.tolist() == [9, 1, 1, 9, 2, 2]
    assert g.tokens.tolist() == [-1, 0, 1, -1, 2, 3]
    assert g == C.chain([1, 2], lambda c: C.symbol(9, token=False) + C.symbol(c)
                        + C.symbol(c)).to_graph()


def test_chain_large_target_is_vectorised_and_correct():
    rng = np.random.default_rng(0)
    target = rng.integers(1, 4, 300)
    b = C.optional(C.blank(0))
    fast = C.chain(target, between=b, leading=b, trailing=b, separate_repeats=True)
    slow = C.chain(target, lambda c: C.symbol(c), between=b, leading=b, trailing=b,
                   separate_repeats=True)
    assert fast.to_graph() == slow.to_graph()


def test_chain_of_a_unit_born_at_a_dead_units_address_is_built_from_it():
    """chain caches the tiling of a template unit. A template made where a dropped one
    lived (the same ``id()``, which CPython reuses) gets a tiling of its own: the
    dropped unit is freed with its cache, and nothing is keyed by ``id()``."""
    between = C.optional(C.blank(0))
    base = C.Unit([C.SYMBOL, 9], src=[0, 1], dst=[1, 1], entry=[0.0, NEG],
                  exit=[NEG, 0.0])
    old = C.symbol(C.SYMBOL, states=3)
    C.chain([1, 2], old, between=between)
    dead = id(old)
    freed = weakref.ref(old.labels)  # the unit's own arrays die with it
    del old
    gc.collect()
    assert freed() is None, "the dropped template is still alive"
    # new units (sharing base's arrays: small) are kept, so that each takes a free
    # block of memory until one takes old's; the list is allocated first, so that
    # its growth takes none
    alive = [None] * 100_000
    for i in range(len(alive)):
        new = C.optional(base, -0.5)
        if id(new) == dead:
            break
        alive[i] = new
    else:  # the allocator decides: without the reuse this case cannot be built
        pytest.skip("CPython gave the dropped template's address to no new unit")
    fast = C.chain([1, 2], new, between=between)
    slow = C.chain([1, 2], lambda c: substitute(new, c), between=between)
    assert fast.to_graph() == slow.to_graph()
    assert fast.to_graph().labels.tolist() == [1, 9, 0, 2, 9]


def test_chain_keeps_no_unit_alive():
    """The cache does not grow with the number of units chained: once dropped, every
    template and separator is freed."""
    refs = []
    for i in range(100):
        template = C.symbol(C.SYMBOL, states=1 + i % 3)
        between = C.optional(C.blank(i))
        C.chain([1, 2, 2], template, between=between, separate_repeats=True)
        refs += [weakref.ref(template.labels), weakref.ref(between.labels)]
    del template, between
    gc.collect()
    assert sum(ref() is not None for ref in refs) == 0


def test_chain_tiling_cache_is_the_templates_keyed_by_separator_value():
    from lattice.compose import _chain, _unit

    template = C.symbol(C.SYMBOL, states=2)
    # separators made afresh, equal in value: one block, the same graph
    graphs = [C.chain([1, 1], template, between=C.optional(C.blank(0)),
                      separate_repeats=True).to_graph() for _ in range(3)]
    assert graphs[0] == graphs[1] == graphs[2]
    cache = _unit.tiling_cache(template)
    assert len(cache) == 1
    # separators that differ in one label, in one weight, in the sign bit of a skip
    # weight, or in being optional each get their own block
    signed = C.Unit([0], [0], [0], entry=0.0, exit=0.0, skip=-0.0, tokens=-1)
    for between in (C.optional(C.blank(3)), C.optional(C.blank(0), -1.0), signed,
                    C.blank(0)):
        got = C.chain([1, 1], template, between=between)
        want = C.chain([1, 1], lambda c: substitute(template, c), between=between)
        assert got.to_graph() == want.to_graph() and got.skip == want.skip
    assert len(cache) == 5
    # no other unit shares the cache, and it stays bounded
    assert _unit.tiling_cache(C.symbol(C.SYMBOL, states=2)) == {}
    for i in range(3 * _chain._MAX_BLOCKS):
        C.chain([1, 2], template, between=C.optional(C.blank(i)))
        assert len(cache) <= _chain._MAX_BLOCKS


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(target=[1, -2]), ValueError, "target"),
        (dict(target=[1.0]), TypeError, "target"),
        (dict(target=[[1]]), ValueError, "target"),
        (dict(target=[1], unit=3), TypeError, "unit"),
        (dict(target=[1], unit=lambda c: "x"), TypeError, "Unit"),
        (dict(target=[1], unit=lambda c: C.symbol(C.SYMBOL)), ValueError, "SYMBOL"),
        (dict(target=[1], between=C.symbol(C.SYMBOL)), ValueError, "between"),
        (dict(target=[1], leading=C.symbol(C.SYMBOL)), ValueError, "leading"),
        (dict(target=[1], trailing=5), TypeError, "trailing"),
        (dict(target=[1], separate_repeats=True), ValueError, "separate_repeats"),
        (dict(target=[1], between=C.blank(0), separate_repeats=1), TypeError,
         "separate_repeats"),
    ],
)
def test_chain_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        C.chain(**kwargs)


U64_MAX = 2**64 - 1


def test_big_unsigned_ids_are_reported_with_their_true_value():
    """numpy casts uint64 2**64 - 1 to int64 -1, which chain took for SYMBOL."""
    for target in (np.array([1, U64_MAX], dtype=np.uint64), [1, 2**70], [1, 2**31]):
        value = int(target[-1])
        with pytest.raises(ValueError, match=rf"^target .*{value}.*int32"):
            C.chain(target)
    with pytest.raises(ValueError, match=rf"^label .*{U64_MAX}.*int32"):
        C.symbol(np.uint64(U64_MAX))
    with pytest.raises(ValueError, match=rf"^label .*{2**31}.*int32"):
        C.blank(2**31)
    with pytest.raises(ValueError, match=rf"^labels\[1\] .*{U64_MAX}.*int32"):
        C.Unit(np.array([1, U64_MAX], dtype=np.uint64), entry=0.0, exit=0.0)
    with pytest.raises(ValueError, match=rf"^tokens .*{U64_MAX}.*int32"):
        C.Unit([1], entry=0.0, exit=0.0, tokens=np.array([U64_MAX], dtype=np.uint64))
    assert C.chain(np.array([2**31 - 1], dtype=np.uint64)).to_graph().labels.tolist() == [
        2**31 - 1]


@pytest.mark.parametrize("bad", [np.timedelta64(2), np.datetime64(2, "s"), np.bool_(True)])
def test_scalar_ids_and_counts_refuse_non_integer_kinds(bad):
    for call, name in [
        (lambda: C.symbol(bad), "label"),
        (lambda: C.symbol(1, states=bad), "states"),
        (lambda: C.symbol(1, min_frames=bad), "min_frames"),
        (lambda: C.symbol(1, max_frames=bad), "max_frames"),
        (lambda: C.repeat(C.symbol(1), bad), "min_count"),
        (lambda: C.repeat(C.symbol(1), 1, bad), "max_count"),
        (lambda: C.Unit([bad], entry=0.0, exit=0.0), r"labels\[0\]"),
    ]:
        with pytest.raises(TypeError, match=name):
            call()


def test_arrays_and_weights_refuse_timedelta():
    td = np.array([0], dtype="m8[s]")
    for kwargs, name in [(dict(src=td, dst=[0]), "src"), (dict(src=[0], dst=td), "dst"),
                         (dict(tokens=td), "tokens"), (dict(entry=td, exit=0.0), "entry"),
                         (dict(src=[0], dst=[0], weight=td), "weight")]:
        with pytest.raises(TypeError, match=rf"^{name} must hold"):
            C.Unit([1], **{"entry": 0.0, "exit": 0.0, **kwargs})
    with pytest.raises(TypeError, match="target must hold integer symbol ids"):
        C.chain(np.array([1, 2], dtype="m8[s]"))
    for call, name in [(lambda: C.symbol(1, stay=np.timedelta64(-1)), "stay"),
                       (lambda: C.optional(C.symbol(1), np.timedelta64(-1)), "weight"),
                       (lambda: C.weighted(C.symbol(1), np.timedelta64(-1)), "weight"),
                       (lambda: C.Unit([1], entry=0.0, exit=0.0, skip=np.timedelta64(0)),
                        "skip")]:
        with pytest.raises(TypeError, match=name):
            call()


# --------------------------------------------------------------------------------
# sizes beyond int32: refused before anything is allocated
# --------------------------------------------------------------------------------

LIMIT = r"at most 2147483647"
BIG = C.chain(np.ones(2**16, dtype=np.int64))  # 65536 states, in one vectorised step
MANY = 2**15 + 1  # copies of BIG: 2**31 + 2**16 states


@pytest.mark.parametrize("make, match", [
    (lambda: C.symbol(1, min_frames=2**31), r"min_frames=2147483648.* 2147483648 states"),
    (lambda: C.symbol(1, states=2**31), r"states=2147483648.* 2147483648 states"),
    (lambda: C.symbol(1, states=2**30 + 1), r"states=1073741825.* 2147483649 arcs"),
    (lambda: C.blank(0, states=3, max_frames=2**31 + 1),
     r"max_frames=2147483649.* 6442450941 states"),
    (lambda: C.repeat(C.symbol(1), 2**31), r"min_count=2147483648.* 2147483648 states"),
    (lambda: C.repeat(C.symbol(1), 1, 2**31), r"max_count=2147483648.* states"),
    (lambda: C.repeat(C.symbol(1), 0, 2**30 + 1), r"max_count=1073741825.* 2147483649 arcs"),
    # an optional unit repeated: every copy links to every later one
    (lambda: C.repeat(C.optional(C.symbol(1)), 0, 2**16 + 1),
     r"max_count=65537.* 2147581953 arcs"),
    (lambda: C.chain([1] * MANY, BIG), r"chain of a target of length 32769.* states"),
    (lambda: C.chain([1] * MANY, lambda c: BIG), r"chain of a target of length 32769"),
    (lambda: C.chain([1] * MANY, {1: BIG}), r"chain of a target of length 32769"),
    (lambda: C.concat([BIG] * MANY), r"concat of 32769 units.* states"),
    (lambda: C.union([BIG] * MANY), r"union of 32769 units.* states"),
    # 65537 states, but an arc from each to every later one (all are optional)
    (lambda: C.chain(np.ones(2**16 + 1, dtype=np.int64), C.optional(C.symbol(C.SYMBOL))),
     r"chain of a target of length 65537.* 2147581953 arcs"),
    # parts of two entries and exits: four arcs per pair of parts
    (lambda: C.chain(np.ones(2**15 + 1, dtype=np.int64),
                     C.optional(C.symbol(C.SYMBOL) | C.blank(0))),
     r"chain of a target of length 32769.* 2147614722 arcs"),
])
def test_sizes_beyond_int32_are_refused_before_allocating(make, match):
    """Options implying 2**31 states or arcs used to allocate tens of GB (or loop for
    hours) before an empty MemoryError; the check comes first, in Python ints."""
    with pytest.raises(ValueError, match=match + r".*int32.*" + LIMIT):
        make()


def test_hand_written_units_beyond_int32_are_refused_before_the_copy():
    huge = np.broadcast_to(np.int8(0), (2**31,))
    with pytest.raises(ValueError, match=r"^src has 2147483648 values.*at most 2147483647"):
        C.Unit([1], src=huge, dst=huge, entry=0.0, exit=0.0)


def _sizes(unit):
    return max(unit.num_states, unit.num_arcs)


GAP = C.Unit([0, 9], src=[0, 0, 1, 1], dst=[0, 1, 0, 1], entry=0.0, exit=0.0, skip=0.0,
             tokens=-1)
AT_THE_LIMIT = [
    ("symbol", lambda: C.symbol(1, 3, min_frames=5)),
    ("symbol", lambda: C.symbol(1, 4, min_frames=2)),
    ("symbol", lambda: C.symbol(1, 2, min_frames=3, max_frames=6)),
    ("repeat", lambda: C.repeat(C.symbol(1, 2), 2, 5)),
    ("repeat", lambda: C.repeat(C.symbol(1) | C.symbol(2, 2), 3)),
    ("repeat", lambda: C.repeat(C.optional(C.symbol(1) | GAP), 1, 4)),
    ("repeat", lambda: C.repeat(C.symbol(1, max_frames=3), 0, 3)),
    ("chain", lambda: C.chain([1, 2, 2], C.symbol(C.SYMBOL, 2, max_frames=4),
                              between=C.optional(C.blank(0)), leading=GAP,
                              trailing=GAP, separate_repeats=True)),
    ("chain", lambda: C.chain([1, 2], lambda c: C.symbol(c) | GAP, between=GAP)),
    ("concat", lambda: C.concat(GAP, C.optional(C.symbol(1)), GAP, C.symbol(2) | GAP)),
    ("union", lambda: C.union(GAP, C.symbol(1, 3), C.optional(C.symbol(2)))),
]


@pytest.mark.parametrize("what, make", AT_THE_LIMIT,
                         ids=[f"{w}-{i}" for i, (w, _m) in enumerate(AT_THE_LIMIT)])
def test_sizes_at_and_just_beyond_the_limit(monkeypatch, what, make):
    """The counts computed before building are exact: a graph of exactly the limit is
    built, one state or arc more is refused (checked with a lowered limit)."""
    n = _sizes(make())
    monkeypatch.setattr(lattice.checks, "SIZE_LIMIT", n)
    assert _sizes(make()) == n
    monkeypatch.setattr(lattice.checks, "SIZE_LIMIT", n - 1)
    with pytest.raises(ValueError, match=rf"^{what}.* {n} (states|arcs).* at most {n - 1}"):
        make()


# --------------------------------------------------------------------------------
# Unit by hand, to_graph
# --------------------------------------------------------------------------------


def test_unit_by_hand():
    gap = C.Unit([0, 9], src=[0, 0, 1, 1], dst=[0, 1, 0, 1], weight=[0, -1, 0, -1],
                 entry=[0.0, -1.0], exit=0.0, skip=0.0, tokens=-1)
    assert gap.is_optional and gap.num_tokens == 0 and gap.num_arcs == 4
    assert repr(gap) == "Unit(num_states=2, num_arcs=4, optional)"
    g = (C.symbol(1) + gap + C.symbol(2)).to_graph()
    # T = 3: the gap is skipped (1 + 2 or 2 + 1 frames of the symbols) or holds one
    # frame, blank (weight 0) or wildcard (-1)
    e = np.zeros((1, 3, 10))
    assert lattice.forward(e, [g])[0] == pytest.approx(math.log(3 + math.exp(-1.0)))
    assert g.num_paths(2) == 1  # the gap skipped
    template = C.Unit([C.SYMBOL, 0], src=[0, 0, 1], dst=[0, 1, 1], entry=[0.0, NEG],
                      exit=[NEG, 0.0])
    assert template.is_template and "template" in repr(template)
    assert template.tokens.tolist() == [0, 0]
    assert C.chain([3, 4], template).to_graph().labels.tolist() == [3, 0, 4, 0]
    numpy_labels = C.Unit(np.array([2, 3]), src=[0], dst=[1], entry=[0, NEG], exit=[NEG, 0])
    assert numpy_labels.labels.tolist() == [2, 3]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(labels=[0, -1]), ValueError, r"labels\[1\]"),
        (dict(labels=[0, 1.5]), TypeError, r"labels\[1\]"),
        (dict(labels=np.array([[0, 1]])), ValueError, "labels"),
        (dict(labels=np.array([0.0, 1.0])), TypeError, "labels"),
        (dict(labels=5), TypeError, "labels"),
        (dict(labels="ab"), TypeError, "labels"),
        (dict(src=[0, 2], dst=[1, 1]), ValueError, "src"),
        (dict(src=[0], dst=[0, 1]), ValueError, "dst"),
        (dict(src=[0.5], dst=[1]), TypeError, "src"),
        (dict(weight=[0.0, 0.0]), ValueError, "weight"),
        (dict(weight=[math.inf]), ValueError, "weight"),
        (dict(entry=[0.0]), ValueError, "entry"),
        (dict(exit=[0.0, math.nan]), ValueError, "exit"),
        (dict(skip=math.inf), ValueError, "skip"),
        (dict(skip="0"), TypeError, "skip"),
        (dict(tokens=[0, -2]), ValueError, "tokens"),
        (dict(tokens=[0]), ValueError, "tokens"),
    ],
)
def test_unit_bad_arguments(kwargs, exc, match):
    base = dict(labels=[0, 1], src=[0], dst=[1], weight=None, entry=[0.0, NEG],
                exit=[NEG, 0.0])
    base.update(kwargs)
    with pytest.raises(exc, match=match):
        C.Unit(base.pop("labels"), base.pop("src"), base.pop("dst"), base.pop("weight"),
               **base)


def test_unit_is_immutable():
    u = C.symbol(1)
    with pytest.raises(AttributeError):
        u.skip = 0.0
    for name in ("_blocks", "_key", "_single", "_template", "cache"):  # derived too
        with pytest.raises(AttributeError):
            setattr(u, name, {})
    with pytest.raises(AttributeError):
        del u.labels
    with pytest.raises(ValueError):
        u.labels[0] = 3


def test_to_graph_refuses_templates_and_sorts_on_request():
    with pytest.raises(ValueError, match="SYMBOL"):
        C.symbol(C.SYMBOL).to_graph()
    u = C.optional(C.blank(0)) + C.symbol(1) + C.symbol(2)
    g, s = u.to_graph(), u.to_graph(sort_arcs=True)
    assert sorted(zip(g.src.tolist(), g.dst.tolist())) == list(zip(s.src.tolist(),
                                                                   s.dst.tolist()))
    assert s != g
    assert repr(C.SYMBOL) == "SYMBOL"


# --------------------------------------------------------------------------------
# the guide: a new topology in < 20 lines, registered and trained with lattice_score
# --------------------------------------------------------------------------------

GUIDE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "writing_a_topology.rst"


@pytest.fixture
def restore_registry():
    saved = dict(lattice.registry._explicit)
    yield
    lattice.registry._explicit.clear()
    lattice.registry._explicit.update(saved)


def python_blocks(text):
    """The bodies of the ``.. code-block:: python`` directives of an rst page."""
    blocks = []
    for match in re.finditer(r"^\.\. code-block:: python\n\n((?:(?:   .*)?\n)+)", text,
                             flags=re.M):
        lines = match.group(1).splitlines()
        blocks.append("\n".join(line[3:] for line in lines))
    return blocks


def test_guide_examples_run(restore_registry):
    """Every python block of docs/writing_a_topology.rst runs, in order."""
    if not GUIDE.exists():
        pytest.skip("docs are not part of this installation")
    blocks = python_blocks(GUIDE.read_text())
    assert len(blocks) >= 3
    namespace = {"__name__": "guide"}
    for block in blocks:
        exec(compile(block, str(GUIDE), "exec"), namespace)
    assert "sil_ctc" in lattice.available_graphs()


def test_new_topology_in_under_20_lines(restore_registry):
    """Define, register and train with a topology; the definition is < 20 lines."""
    torch = pytest.importorskip("torch")
    from lattice.torch import lattice_score

    # --- the topology: 12 lines ---------------------------------------------------
    @lattice.register("hmm_with_optional_pause")
    def hmm_with_optional_pause(target, pause=1, states=2):
        """Each symbol: ``states`` left-to-right states; an optional pause between."""
        pause_unit = C.optional(C.blank(pause))
        return C.chain(
            target,
            C.symbol(C.SYMBOL, states),
            between=pause_unit,
            leading=pause_unit,
            trailing=pause_unit,
        ).to_graph()
    # ----------------------------------------------------------------------------

    assert "hmm_with_optional_pause" in lattice.available_graphs()
    g = lattice.build("hmm_with_optional_pause", [2, 3])
    pause = ("optional", blk(1), 0.0)
    spec = chain_spec([2, 3], 2, between=pause, leading=pause, trailing=pause)
    check_against_reference(spec, graph=g, T_max=6, num_classes=4)
    assert g.labels.tolist() == [1, 2, 2, 1, 3, 3, 1]

    torch.manual_seed(0)
    B, T, F, num_classes = 4, 12, 5, 4
    features = torch.randn(B, T, F)
    graphs = lattice.batch([lattice.build("hmm_with_optional_pause", t)
                            for t in ([2, 3], [3], [2, 2, 3], [3, 2])])
    model = torch.nn.Linear(F, num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for _ in range(25):
        log_probs = model(features).log_softmax(-1)
        loss = -lattice_score(log_probs, graphs).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0]


def test_every_public_name_documented():
    for name in C.__all__:
        obj = getattr(C, name)
        if callable(obj):
            assert ">>>" in (obj.__doc__ or ""), name


def test_compose_is_exported():
    assert "compose" in lattice.__all__ and lattice.compose is C
    assert set(C.__all__) <= set(dir(C))


def test_itertools_compositions_helper():
    # the reference helper itself: C(n - 1, k - 1) compositions
    for n, k in itertools.product(range(1, 7), range(1, 4)):
        assert len(list(compositions(n, k))) == (math.comb(n - 1, k - 1) if n >= k else 0)


def substitute(template, symbol):
    """The template with SYMBOL replaced, rebuilt through the public Unit constructor."""
    labels = [symbol if v == -1 else int(v) for v in template.labels]
    return C.Unit(labels, template.src, template.dst, template.weight, entry=template.entry,
                  exit=template.exit, skip=template.skip, tokens=template.tokens)


TEMPLATES = {
    "optional": lambda: C.optional(C.symbol(C.SYMBOL), -0.5),
    "alternatives": lambda: C.symbol(C.SYMBOL) | C.symbol(C.SYMBOL, 2, max_frames=3),
    "repeat": lambda: C.repeat(C.symbol(C.SYMBOL), 1, 2),
    "two entries": lambda: C.Unit([C.SYMBOL, C.SYMBOL, 5], src=[0, 1, 2], dst=[2, 2, 2],
                                  entry=[0.0, -1.0, NEG], exit=[NEG, NEG, 0.0],
                                  tokens=[0, 0, -1]),
    "empty": lambda: C.concat(),
}
SEPARATORS = {
    "none": {},
    "ctc": dict(between=C.optional(C.blank(0)), leading=C.optional(C.blank(0)),
                trailing=C.optional(C.blank(0)), separate_repeats=True),
    "gap": dict(between=C.Unit([0, 9], src=[0, 0, 1, 1], dst=[0, 1, 0, 1],
                               entry=0.0, exit=0.0, skip=0.0, tokens=-1),
                trailing=C.blank(0)),
}


@pytest.mark.parametrize("template", sorted(TEMPLATES))
@pytest.mark.parametrize("separators", sorted(SEPARATORS))
@pytest.mark.parametrize("target", [[1], [1, 2], [2, 2, 1], [1, 1, 1, 2, 2]])
def test_vectorised_chain_equals_generic_concat(template, separators, target):
    """The tiled fast path gives the graph of the generic concatenation, arc order
    included, for templates with several entries, optional or empty templates."""
    unit = TEMPLATES[template]()
    kwargs = SEPARATORS[separators]
    fast = C.chain(target, unit, **kwargs)
    slow = C.chain(target, lambda c: substitute(unit, c), **kwargs)
    assert fast.skip == slow.skip and fast.num_tokens == slow.num_tokens
    np.testing.assert_array_equal(fast.entry, slow.entry)
    np.testing.assert_array_equal(fast.exit, slow.exit)
    assert fast.to_graph() == slow.to_graph()


def test_union_rejects_non_units_and_units_pickle():
    import copy
    import pickle

    with pytest.raises(TypeError, match=r"units\[1\]"):
        C.union(C.symbol(1), 2)
    u = C.optional(C.symbol(C.SYMBOL, 2), -0.5)
    for back in (pickle.loads(pickle.dumps(u)), copy.deepcopy(u)):
        assert back.is_template and back.skip == -0.5 and back.num_tokens == 1
        assert C.chain([4, 5], back).to_graph() == C.chain([4, 5], u).to_graph()
        with pytest.raises(AttributeError):
            back.skip = 0.0

    # a pickle written before compose became a package names lattice.compose._make
    data = pickle.dumps(u, protocol=2)
    assert b"clattice.compose._unit\nmake_unit\n" in data
    old = pickle.loads(data.replace(b"clattice.compose._unit\nmake_unit\n",
                                    b"clattice.compose\n_make\n"))
    assert C.chain([4, 5], old).to_graph() == C.chain([4, 5], u).to_graph()


def test_to_graph_arrays_like_the_constructor():
    u = C.chain([3, 1, 1], C.symbol(C.SYMBOL, 2), between=C.optional(C.blank(0)),
                separate_repeats=True)
    for sort in (False, True):
        g = u.to_graph(sort_arcs=sort)
        ref = lattice.Graph(g.labels, g.src, g.dst, g.weight, g.start, g.final,
                            tokens=g.tokens)
        assert g == ref
        for name in ("labels", "src", "dst", "weight", "start", "final", "tokens"):
            arr = getattr(g, name)
            assert arr.dtype == getattr(ref, name).dtype, name
            assert arr.flags.c_contiguous and not arr.flags.writeable, name
            assert not np.shares_memory(arr, getattr(u, {"start": "entry", "final": "exit"}
                                                       .get(name, name))), name


def test_to_graph_checks_what_composition_cannot():
    # a label beyond int32 is refused where it enters, with its value
    with pytest.raises(ValueError, match=f"label is {2**40}, beyond int32"):
        C.symbol(2**40)
    with np.errstate(over="ignore"):
        huge = C.weighted(C.weighted(C.symbol(1), 1e308), 1e308)  # overflows to +inf
    with pytest.raises(ValueError, match="start"):
        huge.to_graph()

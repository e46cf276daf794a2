"""Graphs shared among examples (a denominator, say): ``lattice.batch`` stores a
repeated graph object once, for the whole batch (every derived array a zero-stride
view) or for some of its examples (the kernels read the distinct graphs' rows
through ``graph_index``), and every result equals that of the same batch made of
copies, bit for bit (issue 18, item 3)."""

import pickle

import numpy as np
import pytest

import lattice
from lattice._frozen import is_frozen

FIELDS = ("num_states", "num_arcs", "labels", "tokens", "start", "final", "src", "dst",
          "weight")
INDEXES = ("in_ptr", "in_arc", "out_ptr", "out_arc", "band_slot", "band_arc")


def _graphs():
    rng = np.random.default_rng(3)
    cyclic = lattice.Graph([0, 1, 2, 1], [0, 0, 1, 1, 2, 3, 3, 2, 1, 1],
                           [0, 1, 1, 2, 3, 3, 0, 2, 1, 2], None,
                           [0, -1, -np.inf, 0.5], [0.2, 0, 0.1, 0],
                           tokens=[0, -1, 1, 1])  # fmt: skip
    # a state with 12 in-arcs: the CSR loops, not the ELL layout
    n = 12
    wide = lattice.Graph(list(rng.integers(0, 3, n + 1)), list(range(n)) + [n, n],
                         [n] * n + [n, 0], rng.normal(size=n + 2), [0.0] * (n + 1),
                         [0.0] * (n + 1))
    return {"ctc": lattice.build("ctc", [1, 2, 2, 1]), "cyclic": cyclic, "wide": wide}


def _copies(g, size):
    """The same batch, one copy of the graph per example (not shared)."""
    return _copies_of([g] * size)


def _copies_of(graphs):
    """The batch of ``graphs`` with one copy of every graph per example, even where
    the same object repeats (nothing shared)."""
    return lattice.GraphBatch([lattice.Graph(g.labels, g.src, g.dst, g.weight, g.start,
                                             g.final, g.tokens) for g in graphs])


def _results(e, gb, lengths, **weights):
    out = [lattice.forward(e, gb, lengths, **weights),
           lattice.forward(e, gb, lengths, "max", **weights),
           *lattice.forward_backward(e, gb, lengths, **weights)]
    ali = lattice.viterbi(e, gb, lengths, **weights)
    out += [getattr(ali, f) for f in ("score", "states", "labels", "arcs", "tokens")]
    out += list(lattice.kbest(e, gb, 6, lengths, **weights))
    out += list(lattice.sample(e, gb, 9, lengths, seed=4, **weights))
    out += list(lattice.entropy(e, gb, lengths, return_gradients=True, **weights))
    post = lattice.token_posteriors(e, gb, lengths, onsets=True, **weights)
    return out + [post.occupancy, post.onsets]


def _stored_bytes(gb):
    """The bytes of memory behind the batch's arrays (each base counted once)."""
    bases = {}
    arrays = [getattr(gb, name) for name in FIELDS + INDEXES]
    arrays += [*gb.weights_as("float32"), gb.band_weights_as("float32")]
    for a in arrays:
        while isinstance(a.base, np.ndarray):
            a = a.base
        bases[id(a)] = a.nbytes
    return sum(bases.values())


def test_a_repeated_graph_is_stored_once():
    g = lattice.build("ctc", np.arange(1, 2001) % 40 + 1)
    gb = lattice.batch([g] * 128)
    one = lattice.batch([g])
    assert gb.shared_graph is g and len(gb) == 128
    for name in FIELDS + INDEXES:
        view, own = getattr(gb, name), getattr(one, name)
        assert view.shape == (128,) + own.shape[1:], name
        assert view.strides[0] == 0 and is_frozen(view), name
    assert _stored_bytes(gb) == _stored_bytes(one)  # 0.6 MB, not 77 MB
    assert _stored_bytes(_copies(g, 128)) > 100 * _stored_bytes(one)
    with pytest.raises(ValueError):
        gb.labels.flags.writeable = True


def test_only_the_same_object_is_shared():
    g = lattice.build("ctc", [1, 2])
    assert lattice.batch([g, lattice.build("ctc", [1, 2])]).shared_graph is None
    assert lattice.batch([g]).shared_graph is None  # one example: nothing to share
    assert lattice.batch([g, g, lattice.build("ctc", [3])]).shared_graph is None


@pytest.mark.parametrize("name", ["ctc", "cyclic", "wide"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shared_equals_copies_bit_for_bit(name, dtype):
    g = _graphs()[name]
    size, frames = 5, 9
    shared, copies = lattice.batch([g] * size), _copies(g, size)
    assert shared.shared_graph is g and copies.shared_graph is None
    for index in INDEXES:
        a, b = getattr(shared, index), getattr(copies, index)
        assert (a is None and b is None) or np.array_equal(a, b), index
    rng = np.random.default_rng(5)
    e = rng.normal(size=(size, frames, 3)).astype(dtype)
    lengths = np.array([9, 4, 9, 7, 1])
    arcs = rng.normal(size=(size, shared.max_arcs)).astype(dtype)
    per_frame = rng.normal(size=(size, frames, shared.max_arcs)).astype(dtype)
    cpu = lattice.backends.get_backend("cpu")
    for options in ({}, {"banded": False}, {"banded": False, "ell_max_degree": 0}):
        with cpu.options(**options):
            for weights in ({}, {"arc_weights": arcs}, {"arc_weights": per_frame}):
                for x, y in zip(_results(e, shared, lengths, **weights),
                                _results(e, copies, lengths, **weights)):
                    np.testing.assert_array_equal(x, y, err_msg=f"{options} {weights}")


def test_the_engine_shares_a_bare_graph():
    g = _graphs()["cyclic"]
    e = np.random.default_rng(6).normal(size=(4, 6, 3))
    np.testing.assert_array_equal(lattice.forward(e, g), lattice.forward(e, _copies(g, 4)))


def test_pickling_keeps_the_sharing():
    g = _graphs()["ctc"]
    gb = lattice.batch([g] * 50)
    gb.in_arc  # the CSR indexes, computed once
    data = pickle.dumps(gb)
    assert len(data) < len(pickle.dumps(_copies(g, 50))) / 10
    back = pickle.loads(data)
    assert back.shared_graph is not None and len(back) == 50
    for name in FIELDS + INDEXES:
        assert getattr(back, name).strides[0] == 0, name
        np.testing.assert_array_equal(getattr(back, name), getattr(gb, name))


def test_torch_ops_receive_the_shared_graph_once():
    torch = pytest.importorskip("torch")
    from lattice._torch_ops import pack_graphs
    from lattice.torch import lattice_score

    g = _graphs()["cyclic"]
    shared, copies = lattice.batch([g] * 6), _copies(g, 6)
    assert pack_graphs(shared).numel() < pack_graphs(copies).numel() / 3
    _assert_same_torch_gradients(shared, copies, [g] * 6)
    with pytest.raises(ValueError, match="graphs"):  # the count is still checked
        lattice_score(torch.randn(6, 5, 3, dtype=torch.float64), [g] * 5)


def _assert_same_torch_gradients(*batches):
    """lattice_score and alignment_entropy give the same gradients, to the bit, on
    every one of these forms of one batch."""
    torch = pytest.importorskip("torch")
    from lattice.torch import alignment_entropy, lattice_score

    size, arcs = len(lattice.batch(batches[0])), lattice.batch(batches[0]).max_arcs
    em = torch.randn(size, 5, 3, dtype=torch.float64)
    w = torch.randn(size, arcs, dtype=torch.float64)
    grads = []
    for gb in batches:
        e, a = em.clone().requires_grad_(True), w.clone().requires_grad_(True)
        (lattice_score(e, gb, arc_weights=a).sum() + alignment_entropy(e, gb).sum()).backward()
        grads.append((e.grad, a.grad))
    for got in grads[1:]:
        for x, y in zip(got, grads[0]):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


# ----------------------------------------------------------------------------------
# a graph shared by some of the examples
# ----------------------------------------------------------------------------------


def _mixed(name):
    """A batch where ``name``'s graph serves four of seven examples, another graph
    two and a third one; and the same examples as copies."""
    g, other = _graphs()[name], lattice.build("ctc", [2, 1])
    single = lattice.build("segmentation", [1, 1, 2])
    graphs = [g, other, g, g, single, other, g]
    return graphs, lattice.batch(graphs), _copies_of(graphs)


def test_a_graph_shared_by_some_examples_is_stored_once():
    # two denominators (two languages, say), each for half of a batch of 128
    dens = [lattice.build("ctc", np.arange(1, 2001) % k + 1) for k in (40, 30)]
    graphs = [dens[b % 2] for b in range(128)]
    gb = lattice.batch(graphs)
    assert gb.shared_graph is None and len(gb) == 128
    assert len(gb.distinct) == 2 and gb.distinct.graphs == tuple(dens)
    assert gb.graph_index.tolist() == [b % 2 for b in range(128)]
    assert is_frozen(gb.graph_index)
    assert gb.max_in_degree == lattice.batch(dens).max_in_degree  # without gathers
    # what the kernels read: the two graphs (1.2 MB), not 128 copies (74 MB)
    assert _stored_bytes(gb.distinct) == _stored_bytes(lattice.batch(dens))
    assert _stored_bytes(_copies_of(graphs)) > 60 * _stored_bytes(gb.distinct)
    # the per-example arrays are made only when read, and then equal the copies'
    assert "labels" not in vars(gb)
    mixed = [dens[0], lattice.build("ctc", [1]), dens[0], dens[1]]
    gb, copies = lattice.batch(mixed), _copies_of(mixed)
    assert gb.graph_index.tolist() == [0, 1, 0, 2]
    for name in FIELDS + INDEXES:
        np.testing.assert_array_equal(getattr(gb, name), getattr(copies, name), name)
        assert is_frozen(getattr(gb, name)), name
    assert gb.graphs == tuple(mixed) and gb.graphs[2] is dens[0]


def test_the_engine_reads_only_the_distinct_graphs():
    """No engine pass makes the per-example arrays of a batch that shares graphs:
    the kernels read the distinct graphs' rows through graph_index."""
    graphs, gb, _ = _mixed("cyclic")
    e = np.random.default_rng(7).normal(size=(len(gb), 6, 3))
    before = set(vars(gb))
    _results(e, gb, None)
    made = set(vars(gb)) - before
    assert not made & set(FIELDS + INDEXES), made
    with lattice.backends.get_backend("cpu").options(banded=False):
        _results(e, gb, None, arc_weights=np.zeros((len(gb), gb.max_arcs)))
    assert not (set(vars(gb)) - before) & {"in_ptr", "in_arc", "out_ptr", "out_arc"}


@pytest.mark.parametrize("name", ["ctc", "cyclic", "wide"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_some_shared_equals_copies_bit_for_bit(name, dtype):
    graphs, shared, copies = _mixed(name)
    assert len(shared.distinct) == 3 and shared.shared_graph is None
    size, frames = len(shared), 9
    rng = np.random.default_rng(8)
    e = rng.normal(size=(size, frames, 3)).astype(dtype)
    lengths = np.array([9, 4, 9, 7, 1, 0, 8])
    arcs = rng.normal(size=(size, shared.max_arcs)).astype(dtype)
    per_frame = rng.normal(size=(size, frames, shared.max_arcs)).astype(dtype)
    start = np.log(rng.uniform(size=(size, shared.max_states))).astype(dtype)
    cpu = lattice.backends.get_backend("cpu")
    for options in ({}, {"banded": False}, {"banded": False, "ell_max_degree": 0}):
        with cpu.options(**options):
            for weights in ({}, {"arc_weights": arcs}, {"arc_weights": per_frame},
                            {"start_weights": start, "final_weights": start}):
                for x, y in zip(_results(e, shared, lengths, **weights),
                                _results(e, copies, lengths, **weights), strict=True):
                    np.testing.assert_array_equal(x, y, err_msg=f"{options} {weights}")


def test_some_shared_at_every_thread_count():
    graphs, shared, copies = _mixed("ctc")
    e = np.random.default_rng(9).normal(size=(len(shared), 40, 3))
    want = lattice.forward_backward(e, copies)
    for threads in (1, 2, 3):
        with lattice.num_threads(threads):
            for x, y in zip(lattice.forward_backward(e, shared), want, strict=True):
                np.testing.assert_array_equal(x, y)


def test_pickling_keeps_some_sharing():
    den = lattice.build("ctc", np.arange(1, 301) % 7 + 1)
    graphs = [den, lattice.build("ctc", [1]), den, den]
    gb = lattice.batch(graphs)
    back = pickle.loads(pickle.dumps(gb))
    # two of the three large graphs, not three
    assert len(pickle.dumps(gb)) < 0.75 * len(pickle.dumps(_copies_of(graphs)))
    assert back.graph_index.tolist() == [0, 1, 0, 0] and len(back.distinct) == 2
    assert back.graphs[0] is back.graphs[2]
    e = np.random.default_rng(10).normal(size=(4, 5, 8))
    np.testing.assert_array_equal(lattice.forward(e, back), lattice.forward(e, gb))


def test_torch_ops_receive_some_shared_graphs_once():
    pytest.importorskip("torch")
    from lattice._torch_ops import pack_graphs

    graphs, shared, copies = _mixed("cyclic")
    assert pack_graphs(shared).numel() < pack_graphs(copies).numel()
    _assert_same_torch_gradients(shared, copies, graphs)

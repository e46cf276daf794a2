"""One graph for a whole batch (a shared denominator, say): ``lattice.batch`` stores
it once, every derived array is a zero-stride view, and every result equals that of
the same batch made of copies, bit for bit (issue 18, item 3, for the whole-batch
case)."""

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
    one = lattice.batch([g])
    return lattice.GraphBatch.from_padded(
        **{name: np.repeat(getattr(one, name), size, axis=0) for name in FIELDS})


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
    from lattice.torch import alignment_entropy, lattice_score

    g = _graphs()["cyclic"]
    shared, copies = lattice.batch([g] * 6), _copies(g, 6)
    assert pack_graphs(shared).numel() < pack_graphs(copies).numel() / 3
    em = torch.randn(6, 5, 3, dtype=torch.float64)
    w = torch.randn(6, shared.max_arcs, dtype=torch.float64)
    grads = []
    for gb in (shared, copies, [g] * 6):
        e, a = em.clone().requires_grad_(True), w.clone().requires_grad_(True)
        (lattice_score(e, gb, arc_weights=a).sum() + alignment_entropy(e, gb).sum()).backward()
        grads.append((e.grad, a.grad))
    for got in grads[1:]:
        for x, y in zip(got, grads[0]):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
    with pytest.raises(ValueError, match="graphs"):  # the count is still checked
        lattice_score(em, [g] * 5)

"""The arrays kernels index can never be written again (issue: a segfault after
flipping a read-only flag).

A GraphBatch caches what it validated (``max_label``, arc ends inside their graph,
the band and CSR indexes); if any of its arrays could be made writeable, changing a
label to 50,000,000 would make ``lattice.forward`` read out of bounds.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lattice
from lattice._frozen import freeze, is_frozen


def arrays_of(obj):
    """Every ndarray attribute of a Graph or GraphBatch, CSR and band indexes too."""
    names = [n for n in dir(obj) if not n.startswith("_")]
    out = {}
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, np.ndarray):
            out[name] = value
    if isinstance(obj, lattice.GraphBatch):
        for dtype in (np.float32, np.float64):
            for i, a in enumerate(obj.weights_as(dtype)):
                out[f"weights_as({dtype.__name__})[{i}]"] = a
    return out


def ctc_batch():
    return lattice.build_batch("ctc", [[1, 2], [3]])


BATCHES = {
    "build_batch": ctc_batch,
    "batch": lambda: lattice.batch([lattice.build("ctc", [1, 2]),
                                    lattice.build("hmm", [1], states=2)]),
    "general": lambda: lattice.batch([lattice.build("star", [1, 2], wildcard=5)]),
    "from_padded": lambda: lattice.GraphBatch.from_padded(
        num_states=[1], num_arcs=[1], labels=[[1]], tokens=[[0]], start=[[0.0]],
        final=[[0.0]], src=[[0]], dst=[[0]], weight=[[0.0]]),
}


@pytest.mark.parametrize("make", list(BATCHES), ids=list(BATCHES))
def test_no_batch_array_can_be_made_writeable(make):
    gb = BATCHES[make]()
    arrays = arrays_of(gb)
    assert {"labels", "src", "dst", "in_ptr", "in_arc", "out_ptr", "out_arc",
            "num_states", "num_arcs"} <= set(arrays)
    for name, array in arrays.items():
        for target in (array, array.base):
            if isinstance(target, np.ndarray):
                with pytest.raises(ValueError, match="WRITEABLE"):
                    target.flags.writeable = True
        assert is_frozen(array), name


def test_no_graph_array_can_be_made_writeable():
    composed = lattice.compose.concat(lattice.compose.symbol(1), lattice.compose.symbol(2))
    for g in (lattice.build("ctc", [1, 2]), lattice.Graph([0], [0], [0], None, [0], [0]),
              composed.to_graph()):
        for name, array in arrays_of(g).items():
            with pytest.raises(ValueError, match="WRITEABLE"):
                array.flags.writeable = True
            with pytest.raises(ValueError, match="WRITEABLE"):
                array.setflags(write=True)


def test_flipping_the_flag_cannot_crash_the_process(tmp_path):
    """The attack of the issue, in a child process: it must raise, not segfault."""
    script = textwrap.dedent(
        """
        import numpy as np, lattice
        gb = lattice.build_batch("ctc", [[1, 2]])
        try:
            gb.labels.flags.writeable = True
        except ValueError:
            pass
        else:
            gb.labels[0, 1] = 50_000_000
        print(float(lattice.forward(np.zeros((1, 4, 3)), gb)[0]))
        """
    )
    # run outside the repository, or `python -c` would import the source folder
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert np.isfinite(float(done.stdout))


def test_freeze_returns_frozen_arrays_unchanged_and_copies_others():
    a = np.arange(4)
    f = freeze(a)
    assert f is not a and np.array_equal(f, a) and not np.shares_memory(f, a)
    assert freeze(f) is f
    assert freeze(f, np.int32).dtype == np.int32
    assert freeze(np.zeros((0, 3))).shape == (0, 3)
    assert not is_frozen(np.arange(3)) and not is_frozen([1, 2])


def test_batch_attributes_cannot_be_replaced():
    """Replacing an array (or the cached max_label) would also defeat the checks."""
    gb = ctc_batch()
    for name in ("labels", "max_label", "band", "in_arc", "_csr", "max_states"):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(gb, name, np.zeros((2, 5), np.int32))
        with pytest.raises(AttributeError, match="immutable"):
            delattr(gb, name)
    assert lattice.forward(np.zeros((2, 4, 4)), gb).shape == (2,)


@pytest.mark.parametrize("make", list(BATCHES), ids=list(BATCHES))
def test_pickled_batches_come_back_frozen(make):
    import copy
    import pickle

    gb = BATCHES[make]()
    gb.in_arc  # the CSR indexes travel too once built
    for clone in (pickle.loads(pickle.dumps(gb)), copy.deepcopy(gb), copy.copy(gb)):
        arrays = arrays_of(clone)
        assert arrays.keys() == arrays_of(gb).keys()
        for name, array in arrays.items():
            assert is_frozen(array), name
            assert np.array_equal(array, arrays_of(gb)[name]), name
        e = np.zeros((len(gb), 6, 6))
        assert np.array_equal(lattice.forward(e, clone), lattice.forward(e, gb))

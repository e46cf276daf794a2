"""Graph inspection and exchange: num_paths, to_dot, to_dict/from_dict, save/load."""

import io
import json
import math
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lattice
from lattice import Graph
from reference import brute_force
from strategies import examples, graphs

NEG = -math.inf


def sample_graph():
    return Graph(labels=[0, 3, 1], src=[0, 0, 1, 2, 1], dst=[0, 1, 1, 2, 2],
                 weight=[0.0, -0.5, NEG, 1.25, 0.0], start=[0.0, -1.0, NEG],
                 final=[NEG, 0.5, 0.0], tokens=[-1, 0, 1])


# --------------------------------------------------------------------------------
# num_paths
# --------------------------------------------------------------------------------


@given(graphs(), st.integers(0, 5))
@examples(60)
def test_num_paths_matches_brute_force(g, T):
    e = np.zeros((max(T, 1), 4))
    expected = brute_force(g, e, T).num_finite_paths if T else 0
    assert g.num_paths(T) == expected
    assert isinstance(g.num_paths(T), int)


@pytest.mark.parametrize("K, T", [(1, 1), (3, 10), (50, 2000), (200, 3000)])
def test_num_paths_exact_beyond_int64(K, T):
    g = lattice.build("segmentation", list(range(K)))
    n = g.num_paths(T)
    assert type(n) is int
    assert n == math.comb(T - 1, K - 1)


def test_num_paths_parallel_arcs_and_weights():
    # two parallel arcs count twice; a -inf arc, start or final does not count
    g = Graph([0, 0], src=[0, 0, 1, 0], dst=[1, 1, 1, 0], weight=[0.0, -2.0, 0.0, NEG],
              start=[0.0, NEG], final=[NEG, 0.0])
    assert [g.num_paths(T) for T in range(5)] == [0, 0, 2, 2, 2]
    assert Graph([], [], [], None, [], []).num_paths(4) == 0


def test_num_paths_matches_forward_on_zero_emissions():
    g = lattice.build("ctc", [1, 2, 2, 3])
    for T in (7, 9, 15):
        assert lattice.forward(np.zeros((1, T, 4)), [g])[0] == pytest.approx(
            math.log(g.num_paths(T)))


@pytest.mark.parametrize("T, exc", [(-1, ValueError), (1.0, TypeError), (True, TypeError),
                                    ("3", TypeError), (None, TypeError)])
def test_num_paths_bad_frames(T, exc):
    with pytest.raises(exc, match="frames"):
        sample_graph().num_paths(T)


def test_num_paths_numpy_int():
    assert sample_graph().num_paths(np.int64(3)) == sample_graph().num_paths(3)


# --------------------------------------------------------------------------------
# to_dot
# --------------------------------------------------------------------------------


def test_to_dot_content():
    dot = sample_graph().to_dot()
    lines = dot.splitlines()
    assert lines[0] == 'digraph "lattice" {' and lines[-1] == "}"
    assert '  s0 [label="0\\n0"];' in lines  # blank: no token
    assert '  s1 [label="1\\n3 #0 / 0.5", shape=doublecircle];' in lines
    assert '  s2 [label="2\\n1 #1", shape=doublecircle];' in lines
    assert "  start0 -> s0;" in lines
    assert '  start1 -> s1 [label="-1"];' in lines
    assert "start2" not in dot
    assert '  s0 -> s1 [label="-0.5"];' in lines
    assert '  s1 -> s1 [label="-inf", style=dashed];' in lines
    assert '  s2 -> s2 [label="1.25"];' in lines
    assert sum(line.count("->") for line in lines) == 5 + 2


def test_to_dot_symbols_and_escaping():
    g = lattice.build("ctc", [1, 2])
    dot = g.to_dot(symbols=["<b>", 'say "hi"', "back\\slash"], name='my "graph"')
    assert 'digraph "my \\"graph\\"" {' in dot
    assert '\\nsay \\"hi\\" #0' in dot and "\\nback\\\\slash #1" in dot
    assert "<b>" in dot
    # a mapping, missing labels fall back to numbers
    assert '"1\\nx #0"' in g.to_dot(symbols={1: "x"}) and '"0\\n0"' in g.to_dot(symbols={1: "x"})


@pytest.mark.parametrize("kwargs, match", [(dict(symbols=5), "symbols"),
                                           (dict(name=3), "name")])
def test_to_dot_bad_arguments(kwargs, match):
    with pytest.raises(TypeError, match=match):
        sample_graph().to_dot(**kwargs)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
@pytest.mark.parametrize("g", [sample_graph(), lattice.build("ctc", [1, 1, 2]),
                               Graph([], [], [], None, [], [])])
def test_to_dot_is_valid_graphviz(g):
    text = g.to_dot(symbols=["_", 'a"', "b\\"])
    out = subprocess.run(["dot", "-Tplain"], input=text, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    nodes = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("node ")]
    assert sorted(n for n in nodes if n[1:].isdigit()) == sorted(
        f"s{i}" for i in range(g.num_states))


# --------------------------------------------------------------------------------
# to_dict / from_dict
# --------------------------------------------------------------------------------


@given(graphs())
@examples(50)
def test_dict_round_trip_through_strict_json(g):
    text = json.dumps(g.to_dict(), allow_nan=False)
    back = Graph.from_dict(json.loads(text))
    assert back == g
    for name in ("weight", "start", "final"):
        np.testing.assert_array_equal(getattr(back, name), getattr(g, name))


def test_dict_layout():
    d = sample_graph().to_dict()
    assert list(d) == ["format", "version", "labels", "src", "dst", "weight", "start",
                       "final", "tokens"]
    assert d["format"] == "lattice.Graph" and d["version"] == 1
    assert d["weight"] == [0.0, -0.5, "-inf", 1.25, 0.0]
    assert d["tokens"] == [-1, 0, 1]
    assert all(type(v) is int for v in d["labels"] + d["src"] + d["tokens"])
    # python's own json -Infinity is accepted too
    assert Graph.from_dict(json.loads(json.dumps(
        {**d, "weight": [0.0, -0.5, NEG, 1.25, 0.0]}))) == sample_graph()


def broken(**changes):
    d = sample_graph().to_dict()
    for key, value in changes.items():
        if value is KeyError:
            del d[key]
        else:
            d[key] = value
    return d


@pytest.mark.parametrize(
    "data, exc, match",
    [
        ([1, 2], TypeError, "mapping"),
        (broken(format="other"), ValueError, "format"),
        (broken(format=KeyError), ValueError, "format"),
        (broken(version=2), ValueError, "version"),
        (broken(version="1"), ValueError, "version"),
        (broken(version=True), ValueError, "version"),
        (broken(labels=KeyError), ValueError, "labels"),
        (broken(tokens=KeyError), ValueError, "tokens"),
        (broken(extra=[1]), ValueError, "extra"),
        (broken(labels="abc"), TypeError, "labels"),
        (broken(src=5), TypeError, "src"),
        (broken(weight=[0, "inf", 0, 0, 0]), ValueError, "weight"),
        (broken(weight=[0, "+inf", 0, 0, 0]), ValueError, "weight"),
        (broken(start=[0, None, 0]), TypeError, "start"),
        (broken(final=[0, True, 0]), TypeError, "final"),
        (broken(final=[0, math.inf, 0]), ValueError, "final"),
        (broken(weight=[0, math.nan, 0, 0, 0]), ValueError, "weight"),
        # the constructor's checks
        (broken(labels=[0, -3, 1]), ValueError, "labels"),
        (broken(labels=[0.5, 1, 1]), TypeError, "labels"),
        (broken(dst=[0, 1, 1, 2, 7]), ValueError, "dst"),
        (broken(start=[0.0]), ValueError, "start"),
        (broken(tokens=[-2, 0, 1]), ValueError, "tokens"),
    ],
)
def test_from_dict_validates(data, exc, match):
    with pytest.raises(exc, match=match):
        Graph.from_dict(data)


# --------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------


@given(graphs())
@examples(30)
def test_npz_round_trip_in_memory(g):
    buf = io.BytesIO()
    g.save(buf)
    buf.seek(0)
    assert Graph.load(buf) == g


def test_npz_round_trip_on_disk(tmp_path):
    g = lattice.build("star", [1, 2], wildcard=5, blank=0, penalty=-0.5)
    path = tmp_path / "g.npz"
    g.save(path)
    back = Graph.load(path)
    assert back == g and back.labels.dtype == np.int32
    assert not back.labels.flags.writeable
    # numpy's rule: a path without the suffix gets .npz appended
    g.save(str(tmp_path / "h"))
    assert Graph.load(tmp_path / "h.npz") == g
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(["format", "version", "labels", "src", "dst",
                                                "weight", "start", "final", "tokens"])


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def good_arrays():
    g = sample_graph()
    return dict(format=np.array("lattice.Graph"), version=np.array(1),
                **{k: getattr(g, k) for k in ("labels", "src", "dst", "weight", "start",
                                              "final", "tokens")})


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(format=np.array("something")), ValueError, "format"),
        (dict(version=np.array(3)), ValueError, "version"),
        (dict(labels=None), ValueError, "labels"),
        (dict(weight=None), ValueError, "weight"),
        (dict(labels=np.array([0, -1, 1])), ValueError, "labels"),
        (dict(final=np.array([0.0, np.nan, 0.0])), ValueError, "final"),
        (dict(src=np.array([0.0, 0, 1, 2, 1])), TypeError, "src"),
    ],
)
def test_load_validates(tmp_path, change, exc, match):
    arrays = good_arrays()
    for key, value in change.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(exc, match=match):
        Graph.load(path)


def test_load_refuses_pickles_and_single_arrays(tmp_path):
    arrays = good_arrays()
    arrays["labels"] = np.array([0, 3, 1], dtype=object)  # stored with pickle
    path = write_npz(tmp_path / "pickled.npz", **arrays)
    with pytest.raises(ValueError, match="pickle"):
        Graph.load(path)
    npy = tmp_path / "single.npy"
    np.save(npy, np.arange(3))
    with pytest.raises(ValueError, match="npz"):
        Graph.load(npy)


def test_equality_and_repr():
    g = sample_graph()
    assert g == Graph.from_dict(g.to_dict()) and not (g != Graph.from_dict(g.to_dict()))
    assert g != lattice.build("ctc", [3]) and g != "graph"
    assert repr(g) == "Graph(num_states=3, num_arcs=5)"


def test_pickle_and_copy_for_worker_processes():
    """Graphs travel to DataLoader workers / other processes; unpickling validates."""
    import copy
    import pickle

    g = lattice.build("hmm", [1, 2], states=2)
    for back in (pickle.loads(pickle.dumps(g)), copy.deepcopy(g), copy.copy(g)):
        assert back == g and back is not g
        assert not back.labels.flags.writeable
    with pytest.raises(ValueError, match="labels"):
        pickle.loads(pickle.dumps(Tampered()))


class Tampered:
    """Pickles as a Graph with a negative label."""

    def __reduce__(self):
        empty = np.array([], dtype=np.int64)
        return (Graph, (np.array([-1]), empty, empty, None, [0.0], [0.0], None))

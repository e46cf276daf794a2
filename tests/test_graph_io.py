"""Graph inspection and exchange: num_paths, to_dot, to_dict/from_dict, save/load."""

import io
import json
import math
import re
import shutil
import struct
import subprocess
import zipfile

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


# --------------------------------------------------------------------------------
# hostile files: every broken file is a ValueError naming the file, never EOFError,
# BadZipFile, MemoryError or an unpickling
# --------------------------------------------------------------------------------


def npy_bytes(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=True)
    return buf.getvalue()


def npy_header(shape, descr, version=(1, 0)):
    """A .npy header declaring ``shape`` and ``descr``, with no data after it."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buf, header)
    else:
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


def npz_bytes(members, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def good_members(**changes):
    members = {f"{k}.npy": npy_bytes(v) for k, v in good_arrays().items()}
    for key, value in changes.items():
        if value is None:
            del members[f"{key}.npy"]
        else:
            members[f"{key}.npy"] = value
    return members


def forge(data, member, offset, value):
    """The archive with the 4-byte field at ``offset`` of ``member``'s central
    directory entry (what zipfile believes) set to ``value(old)``."""
    data = bytearray(data)
    entry = data.index(b"PK\x01\x02")
    while True:  # a central directory entry: 46 bytes of fields, then the name
        name_len = struct.unpack_from("<H", data, entry + 28)[0]
        if data[entry + 46: entry + 46 + name_len] == member.encode():
            struct.pack_into("<I", data, entry + offset,
                             value(struct.unpack_from("<I", data, entry + offset)[0]))
            return bytes(data)
        entry = data.index(b"PK\x01\x02", entry + 4)


def saved_bytes():
    buf = io.BytesIO()
    sample_graph().save(buf)
    return buf.getvalue()


def corrupt_deflate():
    data = bytearray(npz_bytes(good_members(), zipfile.ZIP_DEFLATED))
    data[60:90] = b"\xff" * 30  # inside the first member's compressed stream
    return bytes(data)


HOSTILE = [
    ("empty", lambda: b"", "is empty"),
    ("truncated", lambda: saved_bytes()[: len(saved_bytes()) // 2], "not a zip"),
    ("tail cut", lambda: saved_bytes()[:-10], "not a zip"),
    ("not a zip", lambda: b"hello, not an archive" * 4, "not a zip"),
    ("a .npy file", lambda: npy_bytes(np.arange(3)), "single array"),
    # the header declares 8 TB: numpy allocated it (MemoryError) before reading
    ("huge float header", lambda: npz_bytes(good_members(weight=npy_header((10**12,), "<f8"))),
     r"'weight' declares shape \(1000000000000,\) of float64 \(8000000000000 bytes\) but "
     r"holds 0"),
    ("huge int header", lambda: npz_bytes(good_members(labels=npy_header((2**40,), "<i8"))),
     r"'labels' declares .* but holds 0"),
    ("header and data disagree", lambda: npz_bytes(good_members(
        labels=npy_header((2,), "<i8") + b"\0" * 24)), r"'labels' declares .*16 bytes.* 24"),
    ("version 2 header", lambda: npz_bytes(good_members(
        src=npy_header((10**9,), "<i4", (2, 0)))), r"'src' declares"),
    # the archive's directory agrees with the header (a lie that costs nothing)
    ("2**31 values", lambda: forge(npz_bytes(good_members(
        labels=npy_header((2**31,), "|i1"))), "labels.npy", 24, lambda n: n + 2**31),
     r"'labels' has 2147483648 values.*at most 2147483647"),
    # offset 8: the flags (2 bytes), then the compression method (2 bytes)
    ("unknown compression", lambda: forge(npz_bytes(good_members()), "src.npy", 8,
                                          lambda n: n & 0xFFFF | (99 << 16)),
     r"'src' cannot be read \(That compression method is not supported"),
    ("encrypted", lambda: forge(npz_bytes(good_members()), "dst.npy", 8, lambda n: n | 1),
     r"'dst' cannot be read \(.*encrypted"),
    ("member cut short", lambda: npz_bytes(good_members(labels=npy_bytes(
        sample_graph().labels)[:-3])), r"'labels' declares"),
    ("bad magic", lambda: npz_bytes(good_members(
        labels=b"\x93NUMPX" + npy_bytes(sample_graph().labels)[6:])), r"'labels'.*magic"),
    ("npy version 9", lambda: npz_bytes(good_members(
        labels=b"\x93NUMPY\x09\x00" + npy_bytes(sample_graph().labels)[8:])),
     r"'labels'.*version"),
    ("header length past the end", lambda: npz_bytes(good_members(
        labels=b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b"{}")), r"'labels'"),
    ("an archive as a member", lambda: npz_bytes(good_members(labels=saved_bytes())),
     r"'labels'.*magic"),
    ("corrupt compressed data", corrupt_deflate, r"cannot be read"),
    ("values of no bytes", lambda: npz_bytes(good_members(labels=npy_header((3,), "|S0"))),
     r"'labels' has the dtype \|S0, whose values have no bytes"),
    ("object array (pickle)", lambda: npz_bytes(good_members(
        labels=npy_bytes(np.array([0, 3, 1], dtype=object)))), r"'labels'.*pickle"),
    ("object format (pickle)", lambda: npz_bytes(good_members(
        format=npy_bytes(np.array(["lattice.Graph"], dtype=object)))), r"'format'.*pickle"),
    ("format of shape (1,)", lambda: npz_bytes(good_members(
        format=npy_bytes(np.array(["lattice.Graph"])))), r"'format' must be a scalar"),
    ("version array", lambda: npz_bytes(good_members(version=npy_bytes(np.array([1, 1])))),
     r"'version' must be a scalar"),
    ("missing src", lambda: npz_bytes(good_members(src=None)), "lacks the array 'src'"),
    ("missing format", lambda: npz_bytes(good_members(format=None)), "format None"),
]


@pytest.mark.parametrize("make, match", [(m, x) for _n, m, x in HOSTILE],
                         ids=[n for n, _m, _x in HOSTILE])
def test_load_refuses_hostile_files_with_a_value_error_naming_the_file(tmp_path, make,
                                                                      match):
    path = tmp_path / "hostile.npz"
    path.write_bytes(make())
    with pytest.raises(ValueError, match=rf"^file '{re.escape(str(path))}'.*{match}"):
        Graph.load(path)
    # a file object is named by its name, an anonymous one as "the file object"
    with open(path, "rb") as fh, pytest.raises(ValueError, match=match):
        Graph.load(fh)
    with pytest.raises(ValueError, match=rf"^the file object\b.*{match}"):
        Graph.load(io.BytesIO(make()))


def test_load_wrong_dtypes_are_the_constructors_type_errors_naming_the_file(tmp_path):
    for field, value in [("src", np.array([0.0, 0, 1, 2, 1])),
                         ("labels", np.array([0, 3, 1]).astype("m8[s]")),
                         ("labels", np.array(["a", "b", "c"])),
                         ("weight", np.zeros(5, dtype=complex)),
                         ("tokens", np.zeros(3, dtype=[("a", "<i4")]))]:
        path = tmp_path / f"{field}.npz"
        path.write_bytes(npz_bytes(good_members(**{field: npy_bytes(value)})))
        with pytest.raises(TypeError, match=rf"^file '.*{field}.npz': {field} must hold"):
            Graph.load(path)
    path = tmp_path / "u64.npz"
    path.write_bytes(npz_bytes(good_members(labels=npy_bytes(
        np.array([0, 2**64 - 1, 1], dtype=np.uint64)))))
    with pytest.raises(ValueError, match=r"u64.npz': labels .*18446744073709551615"):
        Graph.load(path)


def test_load_reads_what_numpy_writes(tmp_path):
    """Compressed archives, big-endian and Fortran-ordered members, extra members."""
    g = sample_graph()
    arrays = {k: v.astype(v.dtype.newbyteorder(">")) if v.ndim else v
              for k, v in good_arrays().items()}
    np.savez_compressed(tmp_path / "c.npz", extra=np.arange(4), **arrays)
    assert Graph.load(tmp_path / "c.npz") == g
    np.savez(tmp_path / "f.npz", **{k: np.asfortranarray(v) if v.ndim else v
                                    for k, v in good_arrays().items()})
    assert Graph.load(tmp_path / "f.npz") == g


def test_load_paths_that_are_no_file_keep_their_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        Graph.load(tmp_path / "no-such-file.npz")
    with pytest.raises(IsADirectoryError):
        Graph.load(tmp_path)


BAD_NUMBERS = [
    ("weight", 2, 10**400, ValueError, "too large for a float"),
    ("start", 1, -(10**400), ValueError, "too large for a float"),
    ("final", 0, np.timedelta64(1), TypeError, "must be a number"),
    ("labels", 1, 2**64 - 1, ValueError, r"is 18446744073709551615, beyond int32"),
    ("labels", 2, 10**400, ValueError, r"beyond int32"),
    ("src", 1, 2**31, ValueError, r"is 2147483648, beyond int32"),
    ("tokens", 0, -(2**63) - 1, ValueError, r"beyond int32"),
    ("labels", 1, True, TypeError, "must be an int"),
    ("dst", 1, 1.0, TypeError, "must be an int"),
    ("tokens", 2, None, TypeError, "must be an int"),
]


@pytest.mark.parametrize("field, index, value, exc, match", BAD_NUMBERS,
                         ids=[f"{f}[{i}]-{k}" for k, (f, i, *_r) in enumerate(BAD_NUMBERS)])
def test_from_dict_names_the_field_and_index_of_a_bad_number(field, index, value, exc,
                                                            match):
    """10**400 raised OverflowError; 2**64 - 1 among small ints made numpy pick float64;
    True was taken for 1."""
    d = sample_graph().to_dict()
    d[field] = list(d[field])
    d[field][index] = value
    with pytest.raises(exc, match=rf"^data\['{field}'\]\[{index}\] .*{match}"):
        Graph.from_dict(d)

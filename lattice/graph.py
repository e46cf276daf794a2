"""The graph model: one time-synchronous, state-emitting alignment graph.

A :class:`Graph` describes every alignment of one training example (see
``docs/architecture.rst`` and DESIGN.md section 2). At each frame a path sits in
exactly one state ``s`` and the state emits the column ``labels[s]`` of the emission
matrix; between two frames the path follows one arc. All weights are log-domain
scores: ``0.0`` is neutral and ``-inf`` forbids.

Graphs are immutable and validated on construction, so the kernels can trust them.
"""

from __future__ import annotations

import lzma
import math
import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.lib import format as npy_format

from .checks import (INT32_MAX, check_length, index_array, int_value, is_int, is_real,
                      weight_array)
from ._frozen import freeze

__all__ = ["Graph", "GraphBuilder"]

_INT64_MAX = np.iinfo(np.int64).max
_FORMAT = "lattice.Graph"
_VERSION = 1
_FIELDS = ("labels", "src", "dst", "weight", "start", "final", "tokens")
_WEIGHT_FIELDS = ("weight", "start", "final")


class Graph:
    """A time-synchronous, state-emitting alignment graph.

    Parameters
    ----------
    labels : array_like of int, shape (S,)
        ``labels[s]`` is the emission column state ``s`` scores at every frame it
        occupies. Must be non-negative; the upper bound (the number of classes C) is
        checked when the graph meets emissions.
    src, dst : array_like of int, shape (A,)
        Arc ``a`` leads from state ``src[a]`` at frame ``t - 1`` to state ``dst[a]``
        at frame ``t``. Self-loops, parallel arcs and cycles are allowed.
    weight : array_like of float, shape (A,), or None
        Log-domain arc scores (``0.0`` neutral, ``-inf`` disables the arc). ``None``
        means all zeros.
    start, final : array_like of float, shape (S,)
        Log-weight of starting / ending a path in each state; ``-inf`` forbids it.
        A scalar is broadcast to every state.
    tokens : array_like of int, shape (S,), optional
        Which target position each state stands for (``-1`` for none, e.g. a blank).
        Viterbi segments are the runs of consecutive frames whose state has the same
        non-negative token. Defaults to ``arange(S)``: every state is its own unit.

    Raises
    ------
    TypeError
        If an index array does not hold integers (a numpy integer dtype: not bool,
        not ``timedelta64`` or ``datetime64``) or a weight array is not real.
    ValueError
        If lengths disagree, an arc endpoint or label is out of range (ids beyond
        int32 are reported with their true value), or a weight is NaN or ``+inf``.

    Examples
    --------
    A two-state "a then b" graph that may stay in either state:

    >>> import lattice
    >>> g = lattice.Graph(labels=[0, 1], src=[0, 0, 1], dst=[0, 1, 1],
    ...                   weight=None, start=[0.0, -float("inf")],
    ...                   final=[-float("inf"), 0.0])
    >>> g
    Graph(num_states=2, num_arcs=3)
    >>> g.labels.tolist(), g.src.tolist(), g.dst.tolist()
    ([0, 1], [0, 0, 1], [0, 1, 1])
    """

    __slots__ = ("labels", "src", "dst", "weight", "start", "final", "tokens")

    def __init__(self, labels, src, dst, weight, start, final, tokens=None):
        labels = index_array("labels", labels, minimum=0, what="label")
        num_states = labels.shape[0]
        src = index_array("src", src)
        num_arcs = src.shape[0]
        dst = index_array("dst", dst, num_arcs)
        for name, ends in (("src", src), ("dst", dst)):
            if ends.size and (ends.min() < 0 or ends.max() >= num_states):
                bad = ends[(ends < 0) | (ends >= num_states)][0]
                raise ValueError(
                    f"{name} refers to state {int(bad)}, but the graph has "
                    f"{num_states} states (valid: 0..{num_states - 1})"
                )
        if weight is None:
            weight = np.zeros(num_arcs)
        weight = weight_array("weight", weight, num_arcs)
        start = weight_array("start", start, num_states)
        final = weight_array("final", final, num_states)
        if tokens is None:
            tokens = np.arange(num_states, dtype=np.int32)
        tokens = index_array("tokens", tokens, num_states, minimum=-1, what="token")
        for name, value in (
            ("labels", labels),
            ("src", src),
            ("dst", dst),
            ("weight", weight),
            ("start", start),
            ("final", final),
            ("tokens", tokens),
        ):
            object.__setattr__(self, name, value)

    @classmethod
    def from_valid(cls, labels, src, dst, weight, start, final, tokens):
        """A graph from arrays that are valid by construction (``lattice.compose``).

        The caller guarantees shapes, labels in ``[0, INT32_MAX]`` and at most
        ``SIZE_LIMIT`` states and arcs (compose checks every label where it enters
        and every size before it builds), arc ends within range, tokens >= -1 and
        float64 weights without NaN; only what composition cannot rule out is
        checked (weights that overflowed to ``+inf``). Arrays are converted to the
        constructor's dtypes and frozen.

        This is the builder-facing constructor: use it only for arrays your code
        made valid (and test against :class:`Graph`), because the kernels index
        memory with them; anything else goes through ``Graph(...)``.

        Examples
        --------
        >>> import numpy as np, lattice
        >>> g = lattice.Graph.from_valid(
        ...     np.array([1]), np.array([0]), np.array([0]), np.zeros(1), np.zeros(1),
        ...     np.zeros(1), np.array([0]))
        >>> g == lattice.Graph([1], [0], [0], None, [0.0], [0.0])
        True
        """
        graph = object.__new__(cls)
        for name, value in (("labels", labels), ("src", src), ("dst", dst),
                            ("tokens", tokens)):
            object.__setattr__(graph, name, freeze(value, np.int32))
        for name, value in (("weight", weight), ("start", start), ("final", final)):
            if value.size and not value.max() < np.inf:
                raise ValueError(f"{name} contains NaN or +inf (a log-weight overflowed)")
            object.__setattr__(graph, name, freeze(value, np.float64))
        return graph

    def __setattr__(self, name, value):
        raise AttributeError("Graph is immutable; build a new one")

    def __delattr__(self, name):
        raise AttributeError("Graph is immutable; build a new one")

    def __reduce__(self):
        # pickling (multiprocessing, DataLoader workers, copy) rebuilds through the
        # validating constructor; files use save/load or to_dict, never pickle
        return (Graph, tuple(getattr(self, name) for name in _FIELDS))

    @property
    def num_states(self) -> int:
        """Number of states S."""
        return int(self.labels.shape[0])

    @property
    def num_arcs(self) -> int:
        """Number of arcs A."""
        return int(self.src.shape[0])

    def __repr__(self):
        return f"Graph(num_states={self.num_states}, num_arcs={self.num_arcs})"

    def __eq__(self, other):
        if not isinstance(other, Graph):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in self.__slots__
        )

    __hash__ = None

    # --------------------------------------------------------------------------------
    # inspection
    # --------------------------------------------------------------------------------

    def num_paths(self, frames) -> int:
        """Exact number of complete paths over ``frames`` frames.

        A path counts if its start weight, every arc weight on it and its final
        weight are finite (``-inf`` forbids); parallel arcs give distinct paths.
        The count is an exact Python ``int`` (it may exceed any machine integer),
        computed by dynamic programming in ``O(frames * (states + arcs))``. With zero
        emissions, ``forward`` returns ``log(num_paths)`` when all allowed weights
        are ``0``.

        Parameters
        ----------
        frames : int
            Number of frames ``T`` (>= 0; 0 gives 0 paths).

        Returns
        -------
        int

        Raises
        ------
        TypeError
            If ``frames`` is not an int.
        ValueError
            If ``frames`` is negative.

        Examples
        --------
        The monotone segmentation of 3 symbols over 6 frames has C(5, 2) paths:

        >>> import lattice
        >>> lattice.build("segmentation", [1, 2, 3]).num_paths(6)
        10
        >>> n = lattice.build("ctc", [1, 2] * 50).num_paths(400)   # no overflow
        >>> n > 2 ** 400, str(n)[:10]
        (True, '5054949849')
        """
        if not is_int(frames):
            raise TypeError(f"frames must be an int, got {frames!r}")
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        num_states = self.num_states
        if frames == 0 or num_states == 0:
            return 0
        allowed = self.weight > -np.inf
        src, dst = self.src[allowed], self.dst[allowed]
        order = np.argsort(dst, kind="stable")
        src, dst = src[order], dst[order]
        # CSR of the allowed in-arcs: reduceat over the states that have any
        targets, first = np.unique(dst, return_index=True)
        max_in = int(np.diff(np.append(first, dst.size)).max()) if dst.size else 1
        counts = (self.start > -np.inf).astype(np.int64)
        for _ in range(int(frames) - 1):
            if counts.dtype != object and int(counts.max()) > _INT64_MAX // max_in:
                counts = counts.astype(object)  # exact Python ints from here on
            new = np.zeros(num_states, dtype=counts.dtype)
            if dst.size:
                new[targets] = np.add.reduceat(counts[src], first)
            counts = new
        return sum(int(c) for c in counts[self.final > -np.inf])

    def to_dot(self, symbols=None, name="lattice") -> str:
        """Graphviz (DOT) text drawing the graph, for ``dot -Tsvg`` and friends.

        Each state is a node ``s<i>`` showing its id, its label (through
        ``symbols`` if given) and its token (``#k``; none for ``-1``). Start states get
        an arrow from a small point, final states a double circle; non-zero start,
        final and arc weights are written on the arrows (forbidden ones, ``-inf``,
        are drawn dashed).

        Parameters
        ----------
        symbols : sequence or mapping, optional
            ``symbols[label]`` is the text shown for a label (e.g. ``"_"`` for the
            blank); labels it lacks are shown as numbers.
        name : str, default "lattice"
            The graph's name in the DOT text.

        Returns
        -------
        str

        Examples
        --------
        >>> import lattice
        >>> print(lattice.build("segmentation", [1, 2]).to_dot(symbols="_ab"))
        digraph "lattice" {
          rankdir=LR;
          node [shape=circle];
          s0 [label="0\\na #0"];
          s1 [label="1\\nb #1", shape=doublecircle];
          start0 [shape=point];
          start0 -> s0;
          s0 -> s0;
          s0 -> s1;
          s1 -> s1;
        }
        """
        if symbols is not None and not isinstance(symbols, (Sequence, Mapping)):
            raise TypeError(
                f"symbols must be a sequence or mapping of label -> text, got "
                f"{type(symbols).__name__}"
            )
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")

        def escape(text):
            return str(text).replace("\\", "\\\\").replace('"', '\\"')

        def symbol(label):
            if symbols is not None:
                try:
                    return str(symbols[label])
                except (IndexError, KeyError):
                    pass
            return str(label)

        def weight_attrs(w):
            if w == 0.0:
                return ""
            if w == -np.inf:
                return ' [label="-inf", style=dashed]'
            return f' [label="{w:.4g}"]'

        lines = [f'digraph "{escape(name)}" {{', "  rankdir=LR;",
                 "  node [shape=circle];"]
        for s in range(self.num_states):
            text = f"{s}\\n{escape(symbol(int(self.labels[s])))}"
            token = int(self.tokens[s])
            if token >= 0:
                text += f" #{token}"
            final = float(self.final[s])
            if final not in (0.0, -np.inf):
                text += f" / {final:.4g}"
            shape = ", shape=doublecircle" if final > -np.inf else ""
            lines.append(f'  s{s} [label="{text}"{shape}];')
        for s in np.flatnonzero(self.start > -np.inf).tolist():
            lines.append(f"  start{s} [shape=point];")
            lines.append(f"  start{s} -> s{s}{weight_attrs(float(self.start[s]))};")
        for a in range(self.num_arcs):
            lines.append(
                f"  s{int(self.src[a])} -> s{int(self.dst[a])}"
                f"{weight_attrs(float(self.weight[a]))};"
            )
        lines.append("}")
        return "\n".join(lines)

    # --------------------------------------------------------------------------------
    # exchange: JSON-compatible dicts and .npz files (never pickle)
    # --------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-compatible dict of the graph (``json.dumps`` it as is).

        Integer arrays become lists of ints; weight arrays lists of floats in which
        ``-inf`` is written as the string ``"-inf"`` (JSON has no infinities).
        :meth:`from_dict` reads it back exactly.

        Returns
        -------
        dict
            Keys ``format`` (``"lattice.Graph"``), ``version`` (1), ``labels``,
            ``src``, ``dst``, ``weight``, ``start``, ``final``, ``tokens``.

        Examples
        --------
        >>> import json, lattice
        >>> g = lattice.build("ctc", [5])
        >>> d = g.to_dict()
        >>> d["labels"], d["start"]
        ([0, 5, 0], [0.0, 0.0, '-inf'])
        >>> lattice.Graph.from_dict(json.loads(json.dumps(d))) == g
        True
        """
        out = {"format": _FORMAT, "version": _VERSION}
        for field in _FIELDS:
            values = getattr(self, field).tolist()
            if field in _WEIGHT_FIELDS:
                values = ["-inf" if v == -math.inf else v for v in values]
            out[field] = values
        return out

    @classmethod
    def from_dict(cls, data) -> "Graph":
        """Rebuild a graph from :meth:`to_dict` output, validated like the constructor.

        Parameters
        ----------
        data : mapping
            With the keys written by :meth:`to_dict`. In weight lists, ``"-inf"``
            (or a float ``-inf``) stands for minus infinity.

        Returns
        -------
        Graph

        Raises
        ------
        TypeError
            If ``data`` is not a mapping, a field is not a list, or an element is not
            an int (index fields: labels, src, dst, tokens; ``bool`` is none) or a
            number (weight fields).
        ValueError
            If ``format`` or ``version`` is wrong, a key is missing or unknown, an
            element is out of range (an id beyond int32, a weight beyond float64:
            both named by field and index), or the arrays do not make a valid graph
            (as in :class:`Graph`).

        Examples
        --------
        >>> import lattice
        >>> d = {"format": "lattice.Graph", "version": 1, "labels": [3], "src": [0],
        ...      "dst": [0], "weight": [-0.5], "start": [0.0], "final": ["-inf"],
        ...      "tokens": [0]}
        >>> lattice.Graph.from_dict(d).final.tolist()
        [-inf]
        """
        if not isinstance(data, Mapping):
            raise TypeError(
                f"data must be a mapping (from Graph.to_dict), got {type(data).__name__}"
            )
        _check_header("data", data.get("format"), data.get("version"))
        unknown = sorted(set(data) - set(_FIELDS) - {"format", "version"})
        if unknown:
            raise ValueError(f"data has unknown keys: {', '.join(map(str, unknown))}")
        arrays = {}
        for field in _FIELDS:
            if field not in data:
                raise ValueError(f"data lacks the key {field!r}")
            values = data[field]
            if isinstance(values, (str, bytes, Mapping)) or not isinstance(
                values, Sequence
            ):
                raise TypeError(
                    f"data[{field!r}] must be a list, got {type(values).__name__}"
                )
            if field in _WEIGHT_FIELDS:
                values = [_json_weight(field, i, v) for i, v in enumerate(values)]
                arrays[field] = np.asarray(values, dtype=np.float64)
            else:
                arrays[field] = _json_ids(field, values)
        return cls(**arrays)

    def save(self, file) -> None:
        """Write the graph to a ``.npz`` file (numpy arrays only, no pickle).

        Parameters
        ----------
        file : str, os.PathLike or file object
            Where to write. As with :func:`numpy.savez`, a path without the ``.npz``
            suffix gets it appended.

        Examples
        --------
        >>> import io, lattice
        >>> g = lattice.build("segmentation", [2, 7], min_frames=2)
        >>> buf = io.BytesIO()
        >>> g.save(buf)
        >>> _ = buf.seek(0)
        >>> lattice.Graph.load(buf) == g
        True
        """
        np.savez(
            file,
            format=np.array(_FORMAT),
            version=np.array(_VERSION),
            **{field: getattr(self, field) for field in _FIELDS},
        )

    @classmethod
    def load(cls, file) -> "Graph":
        """Read a graph written by :meth:`save`, validating it like the constructor.

        Nothing in the file can run code (an array of Python objects, which numpy
        stores with pickle, is refused unread), and nothing is allocated before the
        size an array declares has been checked against the bytes that hold it.

        Parameters
        ----------
        file : str, os.PathLike or file object
            A seekable binary file object is read as it is (and left open).

        Returns
        -------
        Graph

        Raises
        ------
        ValueError
            If the file is not a ``.npz`` archive of a graph: empty, not a zip file or
            a truncated one, a single ``.npy`` array, an array that cannot be read
            (a header that is not numpy's, a size it declares that its bytes do not
            have, more values than a graph may have states or arcs, corrupt
            compressed data, Python objects), a wrong format or version, a missing
            array; or if its arrays do not make a valid graph. The message names the
            file (a file object by its ``name``, if it has one) and the array.
        TypeError
            If an array holds the wrong kind of values (as :class:`Graph` raises).
        OSError
            If ``file`` is a path that cannot be opened: ``FileNotFoundError`` for
            one that does not exist, ``IsADirectoryError`` for a directory.

        Examples
        --------
        >>> import lattice, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "g.npz")
        >>> lattice.build("ctc", [1, 1]).save(path)
        >>> lattice.Graph.load(path)
        Graph(num_states=5, num_arcs=9)
        >>> with open(path, "wb") as f:   # a save that was cut short
        ...     _ = f.write(b"")
        >>> lattice.Graph.load(path)
        Traceback (most recent call last):
        ...
        ValueError: file '...g.npz' is empty, not a .npz archive of a graph
        """
        if isinstance(file, (str, os.PathLike)):
            where = f"file {os.fspath(file)!r}"
            with open(file, "rb") as fh:  # OSError: not a file that can be opened
                arrays = _read_npz(fh, where)
        else:
            name = getattr(file, "name", None)
            where = f"file {name!r}" if isinstance(name, str) else "the file object"
            arrays = _read_npz(file, where)
        try:
            return cls(**arrays)
        except (TypeError, ValueError) as exc:  # the constructor's, naming the array
            kind = TypeError if isinstance(exc, TypeError) else ValueError
            raise kind(f"{where}: {exc}") from None


# what zipfile and its decompressors raise for archives they cannot read (never an
# OSError: those are the operating system's, and stay what they are)
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error,
               lzma.LZMAError, NotImplementedError, RuntimeError)


def _read_npz(fh, where):
    """The arrays ``format``, ``version`` and the fields of a saved graph, read from
    the ``.npz`` archive open as ``fh``; :class:`ValueError` naming ``where`` for
    anything that is not one."""
    start = fh.tell()
    head = fh.read(len(npy_format.MAGIC_PREFIX))
    fh.seek(start)
    if not head:
        raise ValueError(f"{where} is empty, not a .npz archive of a graph")
    if head == npy_format.MAGIC_PREFIX:
        raise ValueError(f"{where} holds a single array (.npy), not a .npz archive of "
                         "a graph")
    try:
        archive = zipfile.ZipFile(fh)
    except _ZIP_ERRORS as exc:
        raise ValueError(f"{where} is not a .npz archive of a graph: not a zip file, "
                         f"or a truncated one ({exc})") from None
    with archive:
        members = set(archive.namelist())

        def read(key):
            if f"{key}.npy" not in members:
                return None
            try:
                return _read_member(archive, f"{key}.npy", f"{where}: the array {key!r}")
            except _ZIP_ERRORS as exc:
                raise ValueError(f"{where}: the array {key!r} cannot be read ({exc})"
                                 ) from None

        header = {}
        for key in ("format", "version"):
            value = read(key)
            if value is not None and value.shape != ():
                raise ValueError(f"{where}: the array {key!r} must be a scalar, got "
                                 f"shape {value.shape}")
            header[key] = None if value is None else value.item()
        _check_header(where, header["format"], header["version"])
        arrays = {}
        for field in _FIELDS:
            arrays[field] = read(field)
            if arrays[field] is None:
                raise ValueError(f"{where} lacks the array {field!r}")
    return arrays


def _read_member(archive, member, what):
    """One ``.npy`` member, read only after its header has been checked: no Python
    objects, at most ``SIZE_LIMIT`` values, and exactly the bytes it declares."""
    info = archive.getinfo(member)
    with archive.open(info) as fp:
        try:
            version = npy_format.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, fortran, dtype = npy_format.read_array_header_2_0(fp)
            else:
                raise ValueError(f"npy format version {version} (lattice reads 1.0 "
                                 "and 2.0)")
        except ValueError as exc:  # numpy's messages: magic string, header, EOF
            raise ValueError(f"{what} is not a .npy array: {exc}") from None
        if dtype.hasobject:
            raise ValueError(f"{what} holds Python objects, stored with pickle; "
                             "lattice never unpickles")
        count = math.prod(shape)
        declared = count * dtype.itemsize
        held = info.file_size - fp.tell()  # as the archive's directory says
        if declared != held:
            raise ValueError(f"{what} declares shape {shape} of {dtype} ({declared} "
                             f"bytes) but holds {held} bytes")
        check_length(what, count)
        data = fp.read(declared)
    if len(data) != declared:
        raise ValueError(f"{what} is cut short ({len(data)} of {declared} bytes)")
    if not dtype.itemsize:  # numpy cannot make an array of it from bytes
        raise ValueError(f"{what} has the dtype {dtype}, whose values have no bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _check_header(name, fmt, version):
    if fmt != _FORMAT:
        raise ValueError(
            f"{name} is not a saved lattice graph (format {fmt!r}, expected {_FORMAT!r})"
        )
    if not is_int(version) or version != _VERSION:
        raise ValueError(
            f"{name} has version {version!r}; this lattice reads version {_VERSION}"
        )


def _json_weight(field, index, value):
    if isinstance(value, str):
        if value.strip().lower() == "-inf":
            return -math.inf
        raise ValueError(
            f"data[{field!r}][{index}] is the string {value!r}; only '-inf' is allowed"
        )
    if not is_real(value):
        raise TypeError(
            f"data[{field!r}][{index}] must be a number or '-inf', got {value!r}"
        )
    try:
        return float(value)
    except OverflowError:  # an int beyond float64, e.g. 10**400
        raise ValueError(
            f"data[{field!r}][{index}] is an int too large for a float (log-weights "
            f"are float64): {value}"
        ) from None


def _json_ids(field, values):
    """An index field of :meth:`Graph.from_dict` as an int64 array; the first element
    that is no int, or beyond int32, is named by its index.

    Checked element by element: numpy would read ``True`` as 1 and make float64 of
    small ints mixed with one beyond int64.
    """
    if not all(type(v) is int for v in values):  # JSON gives exactly ints
        for i, v in enumerate(values):
            if not is_int(v):
                raise TypeError(f"data[{field!r}][{i}] must be an int, got {v!r}")
        values = [int(v) for v in values]
    if values and (min(values) < -INT32_MAX or max(values) > INT32_MAX):
        i = next(i for i, v in enumerate(values) if not -INT32_MAX <= v <= INT32_MAX)
        raise ValueError(f"data[{field!r}][{i}] is {values[i]}, beyond int32 (at most "
                         f"{INT32_MAX} in absolute value)")
    return np.array(values, dtype=np.int64)


class GraphBuilder:
    """Build a :class:`Graph` state by state and arc by arc.

    Examples
    --------
    The CTC graph of the one-symbol target ``[3]`` with blank 0:

    >>> import lattice
    >>> b = lattice.GraphBuilder()
    >>> b0 = b.add_state(0, start=0.0, token=-1)
    >>> s = b.add_state(3, start=0.0, final=0.0, token=0)
    >>> b1 = b.add_state(0, final=0.0, token=-1)
    >>> for state in (b0, s, b1):
    ...     _ = b.add_arc(state, state)
    >>> _ = b.add_arc(b0, s); _ = b.add_arc(s, b1)
    >>> g = b.build()
    >>> g.num_states, g.num_arcs
    (3, 5)
    """

    def __init__(self):
        self._labels = []
        self._start = []
        self._final = []
        self._tokens = []
        self._src = []
        self._dst = []
        self._weight = []

    @property
    def num_states(self) -> int:
        """Number of states added so far."""
        return len(self._labels)

    @property
    def num_arcs(self) -> int:
        """Number of arcs added so far."""
        return len(self._src)

    def add_state(self, label, start=None, final=None, token=None) -> int:
        """Add a state emitting ``label`` and return its id.

        Parameters
        ----------
        label : int
            Emission column of the state (>= 0).
        start, final : float or None
            Log-weight of starting / ending in this state; ``None`` forbids it.
        token : int or None
            Target position the state stands for (``-1``: none). ``None`` means the
            state's own id, as in :class:`Graph`.

        Examples
        --------
        >>> import lattice
        >>> b = lattice.GraphBuilder()
        >>> b.add_state(5, start=0.0), b.add_state(2, final=0.0)
        (0, 1)
        """
        label = int_value("label", label, 0)
        if token is not None:
            token = int_value("token", token, -1)
        state = len(self._labels)
        self._labels.append(label)
        self._start.append(-np.inf if start is None else float(start))
        self._final.append(-np.inf if final is None else float(final))
        self._tokens.append(state if token is None else token)
        return state

    def add_arc(self, src, dst, weight=0.0) -> int:
        """Add an arc from state ``src`` to state ``dst`` and return its id.

        Examples
        --------
        >>> import lattice
        >>> b = lattice.GraphBuilder()
        >>> s = b.add_state(0, start=0.0, final=0.0)
        >>> b.add_arc(s, s, weight=-0.5)
        0
        """
        for name, state in (("src", src), ("dst", dst)):
            if not is_int(state):
                raise TypeError(f"{name} must be an int state id, got {state!r}")
            if not 0 <= int(state) < len(self._labels):
                raise ValueError(
                    f"{name}={int(state)} is not a state (add_state has been called "
                    f"{len(self._labels)} times)"
                )
        self._src.append(int(src))
        self._dst.append(int(dst))
        self._weight.append(float(weight))
        return len(self._src) - 1

    def build(self) -> Graph:
        """Validate and return the :class:`Graph`.

        Examples
        --------
        >>> import lattice
        >>> b = lattice.GraphBuilder()
        >>> _ = b.add_state(1, start=0.0, final=0.0)
        >>> b.build()
        Graph(num_states=1, num_arcs=0)
        """
        return Graph(
            labels=np.asarray(self._labels, dtype=np.int64),
            src=np.asarray(self._src, dtype=np.int64),
            dst=np.asarray(self._dst, dtype=np.int64),
            weight=np.asarray(self._weight, dtype=np.float64),
            start=np.asarray(self._start, dtype=np.float64),
            final=np.asarray(self._final, dtype=np.float64),
            tokens=np.asarray(self._tokens, dtype=np.int64),
        )

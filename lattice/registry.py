"""The graph-builder registry: ``@register`` and the ``lattice.graphs`` entry points.

A builder is a callable ``builder(target, **options) -> Graph``. It may also carry a
vectorised ``builder.build_batch(targets, **options) -> GraphBatch`` that makes the
graphs of many targets at once (used by :func:`build_batch`, hence by the losses of
``lattice.torch`` on every training step). Builders come from
two places: explicit registration with :func:`register`, and the entry-point group
``lattice.graphs`` of installed distributions (the built-in ``lattice_plugins`` are
found this way too, exactly like a third-party plugin). Entry points are discovered
lazily on first use and cached; a plugin is imported only when it is first built.

Third-party plugins cannot break lattice: ``import lattice`` reads no entry point and
imports no plugin. A distribution whose entry points cannot be read is skipped with a
``RuntimeWarning`` naming it; a plugin that fails to import warns (naming the graph
and the entry point) and raises ``ImportError`` only when its graph is built, and
every other graph keeps working.
"""

from __future__ import annotations

import warnings
from importlib.metadata import distributions
from types import MappingProxyType

from .batch import GraphBatch
from .graph import Graph

__all__ = [
    "ENTRY_POINT_GROUP",
    "UnknownGraphError",
    "available_graphs",
    "build",
    "build_batch",
    "get_builder",
    "refresh",
    "register",
    "registered",
]

ENTRY_POINT_GROUP = "lattice.graphs"

_explicit = {}  # name -> builder, from @register
_entry_points = None  # name -> EntryPoint, discovered lazily
_loaded = {}  # name -> builder loaded from an entry point


class UnknownGraphError(LookupError, ValueError):
    """No builder is registered under the requested name.

    Examples
    --------
    >>> import lattice
    >>> try:
    ...     lattice.build("no-such-graph", [1])
    ... except lattice.UnknownGraphError as err:
    ...     print(str(err).split(";")[0])
    no graph builder named 'no-such-graph'
    """


def _distribution_name(dist):
    """A name for ``dist`` in messages, even when its metadata is broken."""
    try:
        name = dist.metadata["Name"]
    except Exception:  # noqa: BLE001 - a broken distribution must not break lattice
        name = None
    if name:
        return str(name)
    path = getattr(dist, "_path", None)
    return str(path) if path is not None else repr(dist)


def _iter_entry_points():
    """Entry points of the group, one distribution at a time.

    ``importlib.metadata.entry_points()`` fails as a whole when any installed
    distribution has a malformed ``entry_points.txt``; here a broken distribution is
    skipped with a warning naming it, and every other plugin stays available.
    Distributions shadowed by an earlier one of the same name (earlier on
    ``sys.path``) are skipped, as ``entry_points()`` does.
    """
    seen = set()
    for dist in distributions():
        try:
            key = getattr(dist, "_normalized_name", None) or _distribution_name(dist)
            if key in seen:
                continue
            seen.add(key)
            eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
        except Exception as exc:  # noqa: BLE001
            warnings.warn(
                f"lattice: skipping the graph plugins of the distribution "
                f"{_distribution_name(dist)!r}: its entry points cannot be read ({exc!r})",
                RuntimeWarning,
                stacklevel=4,
            )
            continue
        yield from eps


def _discover():
    global _entry_points
    if _entry_points is None:
        found = {}
        for ep in _iter_entry_points():
            if ep.name in found and found[ep.name].value != ep.value:
                warnings.warn(
                    f"lattice: two plugins register the graph {ep.name!r} "
                    f"({found[ep.name].value} and {ep.value}); using the first",
                    RuntimeWarning,
                    stacklevel=3,
                )
                continue
            found.setdefault(ep.name, ep)
        _entry_points = found
    return _entry_points


def refresh():
    """Forget discovered entry points and loaded plugins (explicit ones stay).

    Call it after installing a plugin in a running process.

    Examples
    --------
    >>> import lattice
    >>> lattice.registry.refresh()
    >>> "ctc" in lattice.available_graphs()
    True
    """
    global _entry_points
    _entry_points = None
    _loaded.clear()


def register(name, builder=None):
    """Register a graph builder under ``name`` (usable as a decorator).

    An explicit registration wins over an entry point of the same name, with a
    warning; registering a name twice explicitly warns and replaces the first.

    Parameters
    ----------
    name : str
        The name :func:`build` will look up.
    builder : callable, optional
        ``builder(target, **options) -> Graph``. Omit it to use ``register`` as a
        decorator.

    Examples
    --------
    >>> import lattice
    >>> @lattice.register("one_state")
    ... def one_state(target):
    ...     b = lattice.GraphBuilder()
    ...     s = b.add_state(target[0], start=0.0, final=0.0)
    ...     b.add_arc(s, s)
    ...     return b.build()
    >>> lattice.build("one_state", [4]).num_states
    1
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")

    def decorator(func):
        if not callable(func):
            raise TypeError(f"builder for {name!r} must be callable, got {func!r}")
        if name in _explicit and _explicit[name] is not func:
            warnings.warn(
                f"lattice: graph {name!r} registered again; the new builder replaces "
                "the old one",
                RuntimeWarning,
                stacklevel=3,
            )
        elif name in _discover():
            warnings.warn(
                f"lattice: graph {name!r} is also provided by the plugin "
                f"{_discover()[name].value}; the explicit registration wins",
                RuntimeWarning,
                stacklevel=3,
            )
        _explicit[name] = func
        return func

    return decorator if builder is None else decorator(builder)


def available_graphs():
    """Sorted names of every registered builder (explicit and entry points).

    Examples
    --------
    >>> import lattice
    >>> {"ctc", "segmentation"} <= set(lattice.available_graphs())
    True
    """
    return sorted(set(_explicit) | set(_discover()))


def registered():
    """A read-only mapping of name -> where the builder comes from.

    Values are ``"explicit"`` or the entry point's ``module:attr``.

    Examples
    --------
    >>> import lattice
    >>> lattice.registry.registered()["ctc"]
    'lattice_plugins.ctc:ctc'
    """
    view = {name: ep.value for name, ep in _discover().items()}
    view.update({name: "explicit" for name in _explicit})
    return MappingProxyType(view)


def get_builder(name):
    """Return the builder registered under ``name``, importing its plugin if needed.

    Raises
    ------
    UnknownGraphError
        If no builder has that name; the message lists the available ones.
    ImportError
        If the plugin providing it fails to import (a ``RuntimeWarning`` with the
        same message is issued first); nothing is cached, so a later call tries
        again.

    Examples
    --------
    >>> import lattice
    >>> callable(lattice.registry.get_builder("segmentation"))
    True
    """
    if name in _explicit:
        return _explicit[name]
    if name in _loaded:
        return _loaded[name]
    ep = _discover().get(name)
    if ep is None:
        raise UnknownGraphError(
            f"no graph builder named {name!r}; available: "
            f"{', '.join(available_graphs()) or '(none)'}"
        )
    try:
        builder = ep.load()
    except Exception as exc:
        message = (
            f"lattice: the plugin providing graph {name!r} ({ep.value}) failed to "
            f"import: {exc!r}"
        )
        # the warning reaches logs even where the caller handles the ImportError
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        raise ImportError(message) from exc
    _loaded[name] = builder
    return builder


def build(name, target, **options) -> Graph:
    """Build the alignment graph of ``target`` with the builder called ``name``.

    Parameters
    ----------
    name : str
        A registered builder, e.g. ``"ctc"`` or ``"segmentation"``.
    target : sequence of int
        The symbol ids of the target.
    **options
        Passed to the builder (e.g. ``blank=`` for ``ctc``).

    Returns
    -------
    Graph

    Examples
    --------
    >>> import lattice
    >>> lattice.build("ctc", [3, 3], blank=0)
    Graph(num_states=5, num_arcs=9)
    """
    graph = get_builder(name)(target, **options)
    if not isinstance(graph, Graph):
        raise TypeError(
            f"graph builder {name!r} returned {type(graph).__name__}, not lattice.Graph"
        )
    return graph


def build_batch(name, targets, **options) -> GraphBatch:
    """Build the graphs of many targets with the builder ``name``, as one batch.

    If the builder carries a ``build_batch`` attribute (a vectorised version, as the
    built-in ``ctc`` does), it makes the whole batch at once; otherwise every target
    goes through :func:`build`. Either way the result equals
    ``lattice.batch([lattice.build(name, t, **options) for t in targets])``.

    Parameters
    ----------
    name : str
        A registered builder.
    targets : sequence of sequences of int
        One target per example.
    **options
        Passed to the builder.

    Returns
    -------
    GraphBatch

    Examples
    --------
    >>> import lattice
    >>> gb = lattice.build_batch("ctc", [[1, 2], [3]])
    >>> gb.num_states.tolist()
    [5, 3]
    >>> gb.graphs[0] == lattice.build("ctc", [1, 2])
    True
    """
    builder = get_builder(name)
    fast = getattr(builder, "build_batch", None)
    if fast is None:
        return GraphBatch([build(name, target, **options) for target in targets])
    gb = fast(targets, **options)
    if not isinstance(gb, GraphBatch):
        raise TypeError(
            f"{name!r}.build_batch returned {type(gb).__name__}, not lattice.GraphBatch"
        )
    return gb

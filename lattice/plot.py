"""Plots: posteriors with an alignment, the lattice of one graph, loss curves.

matplotlib is optional (``pip install "lattice[plot]"``): it is imported inside each
function, never when ``lattice`` is imported. Every function draws on the ``ax`` it is
given (or a new figure's axes) and returns that ``Axes``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_lattice", "plot_losses", "plot_paths", "plot_posteriors", "pyplot"]


def pyplot():
    """``matplotlib.pyplot``, imported when first needed, or an ImportError that names
    the extra installing it (``lattice[plot]``).

    Examples
    --------
    >>> from lattice.plot import pyplot
    >>> pyplot().__name__
    'matplotlib.pyplot'
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "lattice's plots need matplotlib: install it with "
            "pip install \"lattice[plot]\" (or pip install matplotlib)"
        ) from exc
    return plt


def _axes(ax, figsize):
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _as_2d(name, values):
    if type(values).__module__.split(".")[0] == "torch":
        values = values.detach().cpu().float().numpy()
    arr = np.asarray(values)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (T, C), got shape {arr.shape}")
    return arr.astype(np.float64)


def _check_symbols(symbols, classes):
    if symbols is None:
        return [str(c) for c in range(classes)]
    symbols = [str(s) for s in symbols]
    if len(symbols) != classes:
        raise ValueError(f"symbols must name all {classes} classes, got {len(symbols)}")
    return symbols


def plot_posteriors(posteriors, path=None, ax=None, symbols=None, title=None):
    """Heat map of per-frame class probabilities, with an alignment drawn on top.

    Parameters
    ----------
    posteriors : array_like or Tensor, shape (T, C)
        Per-frame probabilities (``exp`` of log-probabilities, or the
        ``emission_grad`` of :func:`lattice.forward_backward`).
    path : array_like of int, shape (T,), optional
        The class of each frame along an alignment, e.g. ``Alignment.labels[b]`` of
        :func:`lattice.viterbi`; negative entries (past the length) are not drawn.
    ax : matplotlib Axes, optional
    symbols : sequence of str, optional
        Names of the C classes (tick labels).
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ImportError
        If matplotlib is missing.
    ValueError
        If the shapes of ``posteriors``, ``path`` or ``symbols`` disagree.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np, lattice
    >>> from lattice.plot import plot_posteriors
    >>> lp = np.log(np.random.default_rng(0).dirichlet(np.ones(3), size=8))
    >>> ali = lattice.viterbi(lp[None], [lattice.build("ctc", [1, 2])])
    >>> ax = plot_posteriors(np.exp(lp), path=ali.labels[0], symbols="_ab")
    >>> ax.get_ylabel()
    'class'
    """
    post = _as_2d("posteriors", posteriors)
    frames, classes = post.shape
    names = _check_symbols(symbols, classes)
    ax = _axes(ax, (8, 3))
    image = ax.imshow(post.T, aspect="auto", origin="lower", cmap="magma_r",
                      interpolation="nearest", vmin=0.0, vmax=max(1.0, post.max()),
                      extent=(-0.5, frames - 0.5, -0.5, classes - 0.5))
    ax.figure.colorbar(image, ax=ax, pad=0.01, label="probability")
    if path is not None:
        path = np.asarray(path)
        if path.shape != (frames,):
            raise ValueError(f"path must have shape ({frames},), got {path.shape}")
        if path.size and path.max() >= classes:
            raise ValueError(f"path holds class {int(path.max())}, but there are {classes}")
        t = np.flatnonzero(path >= 0)
        y = path[t].astype(float)
        ax.step(t, y, where="mid", color="tab:cyan", linewidth=1.2, label="alignment")
        ax.plot(t, y, "o", color="tab:cyan", markersize=2.5)
        ax.legend(loc="upper right", fontsize="small")
    ax.set_yticks(range(classes))
    ax.set_yticklabels(names)
    ax.set_xlabel("frame")
    ax.set_ylabel("class")
    if title:
        ax.set_title(title)
    return ax



def plot_paths(posteriors, paths, ax=None, symbols=None, title=None, labels=None,
               spread=0.5, color=None, alpha=None):
    """Heat map of per-frame class probabilities with several alignments on top.

    Draws what :func:`plot_posteriors` draws, then one line per path: the n best
    alignments of :func:`lattice.kbest` (``KBest.labels[b]``), paths drawn by
    :func:`lattice.sample` (``Samples.labels[b]``), or any others. Path ``i`` is
    shifted vertically by the ``i``-th of ``N`` evenly spaced offsets in
    ``[-spread / 2, spread / 2]``, so paths that share frames stay apart (and a
    path drawn many times shows as a thick band).

    Parameters
    ----------
    posteriors : array_like or Tensor, shape (T, C)
        Per-frame probabilities, as in :func:`plot_posteriors`.
    paths : array_like of int, shape (N, T), or (T,) for one path
        The class of each frame along each path; negative entries (past the length,
        or a path that does not exist, as ``kbest`` pads them) are not drawn, and a
        path with no frame left is skipped.
    ax : matplotlib Axes, optional
    symbols : sequence of str, optional
        Names of the C classes (tick labels).
    title : str, optional
    labels : sequence of str, optional
        One legend entry per path (none by default).
    spread : float >= 0, default 0.5
        The range of the vertical offsets, in classes (0 draws every path on its
        classes).
    color : matplotlib color, optional
        One colour for every path (default: a colour per path, from ``tab10``).
    alpha : float, optional
        The opacity of the path lines.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ImportError
        If matplotlib is missing.
    TypeError
        If ``posteriors`` does not hold real numbers or ``paths`` not integers.
    ValueError
        If the shapes of ``posteriors``, ``paths``, ``symbols`` or ``labels``
        disagree, a path holds a class ``>= C``, or ``spread`` is negative.

    Examples
    --------
    The three best CTC alignments of ``ab`` over 6 frames:

    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np, lattice
    >>> from lattice.plot import plot_paths
    >>> lp = np.log(np.random.default_rng(0).dirichlet(np.ones(3), size=6))
    >>> best = lattice.kbest(lp[None], lattice.build("ctc", [1, 2]), 3)
    >>> ax = plot_paths(np.exp(lp), best.labels[0], symbols="_ab",
    ...                 labels=["1st", "2nd", "3rd"])
    >>> [line.get_label() for line in ax.get_lines()]
    ['1st', '2nd', '3rd']
    """
    post = _as_2d("posteriors", posteriors)
    frames, classes = post.shape
    arr = np.asarray(paths)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != frames:
        raise ValueError(
            f"paths must have shape (N, {frames}) or ({frames},), got {np.shape(paths)}"
        )
    if not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError(f"paths must hold class ids (integers), got dtype {arr.dtype}")
    if arr.size and arr.max() >= classes:
        raise ValueError(f"paths hold class {int(arr.max())}, but there are {classes}")
    count = arr.shape[0]
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != count:
            raise ValueError(f"labels must name all {count} paths, got {len(labels)}")
    spread = float(spread)
    if not spread >= 0:
        raise ValueError(f"spread must be >= 0, got {spread}")
    ax = plot_posteriors(post, ax=ax, symbols=symbols, title=title)
    offsets = (np.linspace(-spread / 2, spread / 2, count) if count > 1
               else np.zeros(count))
    cycle = pyplot().get_cmap("tab10")
    for i, path in enumerate(arr):
        t = np.flatnonzero(path >= 0)
        if not t.size:
            continue
        ax.step(t, path[t] + offsets[i], where="mid", linewidth=1.2, alpha=alpha,
                color=cycle(i % 10) if color is None else color,
                label=labels[i] if labels is not None else "_nolegend_")
    if labels is not None and count:
        ax.legend(loc="upper right", fontsize="small")
    return ax

def _useful_states(graph, frames):
    """Boolean (T, S): states on some complete path of ``frames`` frames."""
    S = graph.num_states
    ok_arc = np.isfinite(graph.weight)
    src, dst = graph.src[ok_arc], graph.dst[ok_arc]
    fwd = np.zeros((frames, S), dtype=bool)
    bwd = np.zeros((frames, S), dtype=bool)
    fwd[0] = np.isfinite(graph.start)
    for t in range(1, frames):
        np.logical_or.at(fwd[t], dst, fwd[t - 1][src])
    bwd[-1] = np.isfinite(graph.final)
    for t in range(frames - 2, -1, -1):
        np.logical_or.at(bwd[t], src, bwd[t + 1][dst])
    return fwd & bwd


def plot_lattice(graph, emissions, ax=None, symbols=None, title=None):
    """The unrolled lattice of one graph (states x frames) with its best path.

    Draws every (frame, state) node and arc that lies on some complete path, coloured
    by the emission score the node reads, and the Viterbi path on top.

    Parameters
    ----------
    graph : lattice.Graph
    emissions : array_like or Tensor, shape (T, C)
        Per-frame scores (log-probabilities); ``C`` must exceed every label.
    ax : matplotlib Axes, optional
    symbols : sequence of str, optional
        Names of the C classes, used to label the states.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ImportError
        If matplotlib is missing.
    TypeError, ValueError
        If ``graph`` is not a Graph, or the emissions do not fit it.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np, lattice
    >>> from lattice.plot import plot_lattice
    >>> lp = np.log(np.random.default_rng(0).dirichlet(np.ones(3), size=6))
    >>> ax = plot_lattice(lattice.build("ctc", [1, 2]), lp, symbols="_ab")
    >>> ax.get_xlabel(), len(ax.get_yticks())
    ('frame', 5)
    """
    from . import viterbi
    from .graph import Graph

    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be a lattice.Graph, got {type(graph).__name__}")
    em = _as_2d("emissions", emissions)
    frames, classes = em.shape
    if frames == 0:
        raise ValueError("emissions must have at least one frame")
    if graph.num_states and graph.labels.max() >= classes:
        raise ValueError(
            f"graph uses label {int(graph.labels.max())}, but emissions have only "
            f"{classes} classes"
        )
    names = _check_symbols(symbols, classes)
    useful = _useful_states(graph, frames) if graph.num_states else np.zeros((frames, 0), bool)
    ax = _axes(ax, (8, 0.5 + 0.35 * max(graph.num_states, 2)))
    # arcs between useful nodes, one line collection
    from matplotlib.collections import LineCollection

    segs = []
    for a in range(graph.num_arcs):
        if not np.isfinite(graph.weight[a]):
            continue
        s, d = int(graph.src[a]), int(graph.dst[a])
        ts = np.flatnonzero(useful[:-1, s] & useful[1:, d])
        segs.extend(((t, s), (t + 1, d)) for t in ts)
    if segs:
        ax.add_collection(LineCollection(segs, colors="0.75", linewidths=0.6, zorder=1))
    t_idx, s_idx = np.nonzero(useful)
    score = em[t_idx, graph.labels[s_idx]]
    finite = np.isfinite(score)
    shown = ax.scatter(t_idx[finite], s_idx[finite], c=score[finite], cmap="viridis",
                       s=22, zorder=2, edgecolors="none")
    if finite.any():
        ax.figure.colorbar(shown, ax=ax, pad=0.01, label="emission score")
    if useful.any():
        ali = viterbi(em[None], [graph])
        if np.isfinite(ali.score[0]):
            states = ali.states[0]
            ax.plot(np.arange(frames), states, "-o", color="tab:red", linewidth=1.6,
                    markersize=3.5, zorder=3, label=f"best path ({ali.score[0]:.2f})")
            ax.legend(loc="best", fontsize="small")
    ax.set_xlim(-0.5, frames - 0.5)
    ax.set_ylim(graph.num_states - 0.5, -0.5)  # state 0 on top
    ax.set_yticks(range(graph.num_states))
    ax.set_yticklabels([f"{s}: {names[graph.labels[s]]}" for s in range(graph.num_states)])
    ax.set_xlabel("frame")
    ax.set_ylabel("state: label")
    if title:
        ax.set_title(title)
    return ax


def plot_losses(curves, ax=None, xlabel="step", ylabel="loss", title=None, log=False):
    """Learning curves: one line per named series.

    Parameters
    ----------
    curves : dict of str to sequence, or to (x, y) pair
        Each value is either the y values (x = 1, 2, ...) or an ``(x, y)`` pair.
    ax : matplotlib Axes, optional
    xlabel, ylabel, title : str, optional
    log : bool, default False
        Logarithmic y axis (non-positive values are masked).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ImportError
        If matplotlib is missing.
    TypeError, ValueError
        If ``curves`` is not a dict, or an ``(x, y)`` pair has mismatched lengths.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> from lattice.plot import plot_losses
    >>> ax = plot_losses({"train": [3.0, 1.5, 0.7], "valid": ([1, 3], [2.0, 1.0])})
    >>> [line.get_label() for line in ax.get_lines()]
    ['train', 'valid']
    """
    if not isinstance(curves, dict):
        raise TypeError(f"curves must be a dict of name -> values, got {type(curves).__name__}")
    series = []
    for name, values in curves.items():
        if isinstance(values, tuple) and len(values) == 2:
            x, y = np.asarray(values[0], dtype=float), np.asarray(values[1], dtype=float)
            if x.shape != y.shape or x.ndim != 1:
                raise ValueError(
                    f"curve {name!r}: x and y must be 1-D of equal length, got "
                    f"{x.shape} and {y.shape}"
                )
        else:
            y = np.asarray(values, dtype=float)
            if y.ndim != 1:
                raise ValueError(f"curve {name!r} must be 1-D, got shape {y.shape}")
            x = np.arange(1, y.size + 1, dtype=float)
        series.append((name, x, y))
    ax = _axes(ax, (6, 3.5))
    for name, x, y in series:
        if log:
            y = np.where(y > 0, y, np.nan)
        style = dict(marker="o", markersize=3) if x.size <= 30 else dict(linewidth=0.8, alpha=0.6)
        ax.plot(x, y, label=str(name), **style)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if series:
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax

"""lattice: forward, backward and best path over any time-synchronous alignment graph.

The pieces, in the order data flows through them: a builder (``lattice.build``) or
``GraphBuilder`` makes a :class:`Graph` per example; :func:`batch` pads many graphs
into a :class:`GraphBatch`; :func:`forward`, :func:`forward_backward` and
:func:`viterbi` run the compiled kernels on emissions of shape (B, T, C);
:func:`sample`, :func:`kbest`, :func:`entropy` and :func:`token_posteriors` describe
the rest of the distribution over paths. For CTC, :func:`ctc_score` and
:func:`ctc_forward_backward` take the targets directly, without a graph batch.
"""

try:
    from . import _core  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on how lattice was installed
    raise ImportError(
        "lattice's compiled kernels (lattice._core) are missing. Install the package "
        "with `pip install .` (or `pip install -e .`) so the Cython extension is "
        "built; if you did, make sure you are not importing the source folder by "
        f"running Python from the repository root. Original error: {exc}"
    ) from exc

from . import backends, compose, decode, memory, registry, weights
from ._threads import (
    get_num_threads,
    max_threads,
    num_threads,
    openmp_enabled,
    set_num_threads,
)
from .batch import GraphBatch, batch
from .distribution import (
    EntropyGradients,
    KBest,
    Samples,
    TokenPosteriors,
    entropy,
    kbest,
    sample,
    token_posteriors,
)
from .engine import Alignment, ForwardBackward, forward, forward_backward, viterbi
from .fused import CTCForwardBackward, ctc_forward_backward, ctc_score
from .graph import Graph, GraphBuilder
from .memory import get_memory_budget, memory_budget, set_memory_budget
from .registry import UnknownGraphError, available_graphs, build, build_batch, register
from .semiring import SEMIRINGS

__version__ = "0.1.0"

__all__ = [
    "Alignment",
    "CTCForwardBackward",
    "EntropyGradients",
    "ForwardBackward",
    "Graph",
    "GraphBatch",
    "GraphBuilder",
    "KBest",
    "SEMIRINGS",
    "Samples",
    "TokenPosteriors",
    "UnknownGraphError",
    "available_graphs",
    "backends",
    "batch",
    "build",
    "build_batch",
    "compose",
    "ctc_forward_backward",
    "ctc_score",
    "decode",
    "entropy",
    "forward",
    "forward_backward",
    "get_memory_budget",
    "get_num_threads",
    "kbest",
    "max_threads",
    "memory",
    "memory_budget",
    "num_threads",
    "openmp_enabled",
    "register",
    "registry",
    "sample",
    "set_memory_budget",
    "set_num_threads",
    "token_posteriors",
    "viterbi",
    "weights",
]

"""The semirings the engine runs its dynamic programs in.

A semiring fixes how alternatives combine ((+): over paths) and how scores along one
path combine ((x): always ``+`` of log-scores here). The kernels are specialised per
semiring at compile time; this module only names them and says what they mean.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Semiring", "SEMIRINGS", "get_semiring"]


@dataclass(frozen=True)
class Semiring:
    """A named semiring.

    Attributes
    ----------
    name : str
        The name the engine and the kernels use.
    plus : str
        How scores of alternative paths combine.
    gradient : str
        What the gradient of the total score with respect to an emission means.
    """

    name: str
    plus: str
    gradient: str


SEMIRINGS = {
    "log": Semiring(
        "log",
        plus="logsumexp: the log-partition over all paths",
        gradient="posterior probability of each state / arc at each frame",
    ),
    "max": Semiring(
        "max",
        plus="max: the score of the single best path",
        gradient="indicator of the best path (a sub-gradient where paths tie)",
    ),
}


def get_semiring(name) -> Semiring:
    """Return the :class:`Semiring` called ``name``.

    Examples
    --------
    >>> from lattice.semiring import get_semiring
    >>> get_semiring("max").plus
    'max: the score of the single best path'
    """
    try:
        return SEMIRINGS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown semiring {name!r}; available: {', '.join(sorted(SEMIRINGS))}"
        ) from None

"""Exceptions that code written for torch and code written for lattice can both catch.

torch raises ``RuntimeError`` where its ops get bad lengths or non-integral lengths;
the lattice engine raises ``ValueError`` and ``TypeError``. The ops of
``lattice.torch`` raise :class:`LatticeValueError` (a ``ValueError`` *and* a
``RuntimeError``) and :class:`LatticeTypeError` (a ``TypeError`` and a
``RuntimeError``), so ``except RuntimeError`` and ``except ValueError`` both work.
One mechanism does it, at the boundary: :func:`torch_errors` wraps each public op
and each custom-op implementation and re-raises whatever ``ValueError`` or
``TypeError`` comes out of it as the matching type, message unchanged, chained
with ``from``. This module does not import torch.
"""

from __future__ import annotations

import functools

__all__ = ["LatticeTypeError", "LatticeValueError", "torch_errors"]


class LatticeValueError(ValueError, RuntimeError):
    """A bad value given to a ``lattice.torch`` op: a ``ValueError`` and a ``RuntimeError``.

    Examples
    --------
    >>> import torch
    >>> from lattice.torch import LatticeValueError, ctc_loss
    >>> try:
    ...     ctc_loss(torch.zeros(4, 1, 3), torch.tensor([[1]]), (9,), (1,))
    ... except RuntimeError as error:           # as for torch.nn.functional.ctc_loss
    ...     print(type(error).__name__, isinstance(error, ValueError))
    LatticeValueError True
    """


class LatticeTypeError(TypeError, RuntimeError):
    """A wrong type given to a ``lattice.torch`` op: a ``TypeError`` and a ``RuntimeError``.

    Examples
    --------
    >>> import torch
    >>> from lattice.torch import LatticeTypeError, ctc_loss
    >>> try:
    ...     ctc_loss(torch.zeros(4, 1, 3), torch.tensor([[1]]), torch.tensor([4.0]), (1,))
    ... except RuntimeError as error:           # torch: "input_lengths must be integral"
    ...     print(error)
    input_lengths must hold integers, got torch.float32
    """


_DUAL_TYPES = {ValueError: LatticeValueError, TypeError: LatticeTypeError}


def _dual_type(cls):
    """The type ``cls`` (a ValueError or TypeError) is re-raised as.

    A subclass keeps its own type too (``except UnknownGraphError`` still works): it
    becomes a class deriving from both, made once; where Python cannot combine the
    two (a layout conflict) the plain dual type is used.
    """
    dual = _DUAL_TYPES.get(cls)
    if dual is None:
        base = LatticeValueError if issubclass(cls, ValueError) else LatticeTypeError
        try:
            dual = type(cls.__name__, (cls, base),
                        {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
        except TypeError:
            dual = base
        dual = _DUAL_TYPES.setdefault(cls, dual)
    return dual


def _as_dual(error):
    kind = _dual_type(type(error))
    try:
        return kind(*error.args)
    except TypeError:  # a subclass whose constructor takes other arguments
        fallback = LatticeValueError if isinstance(error, ValueError) else LatticeTypeError
        return fallback(str(error))


def torch_errors(fn):
    """Decorate ``fn`` so that its ``ValueError`` / ``TypeError`` are also ``RuntimeError``.

    Exceptions that already are ``RuntimeError`` (torch's own, ``NotImplementedError``,
    a dual type raised further in) pass unchanged; so does everything else.

    Examples
    --------
    >>> from lattice._torch_errors import torch_errors
    >>> @torch_errors
    ... def check(n):
    ...     if n < 0:
    ...         raise ValueError(f"n must be >= 0, got {n}")
    >>> try:
    ...     check(-1)
    ... except RuntimeError as error:
    ...     print(type(error).__name__, "|", error, "|", type(error.__cause__).__name__)
    LatticeValueError | n must be >= 0, got -1 | ValueError
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError) as error:
            if isinstance(error, RuntimeError):
                raise
            raise _as_dual(error) from error

    return wrapper

"""The layout constants of the kernels, written once.

``setup.py`` passes every name of :data:`TEMPLATE_NAMES` to Tempita when it renders
``_core.pyx.tp`` and ``_rows.h.tp``, and the Python side (``batch.py``, the CPU
backend) imports them from here, so the compiled kernels and the code that sizes
their buffers can never disagree. This module imports nothing: ``setup.py`` loads it
by path before anything is built.
"""

#: cells of -inf before every alpha row of the banded and ELL kernels, and after the
#: y row of the backward pass: the row functions read ``prev[s - d]`` for ``d <
#: BAND_WIDTHS[-1]`` without a guard
BAND_PAD = 2

#: the band widths ``D`` with row functions of their own: every arc goes from ``s -
#: d`` to ``s`` with ``0 <= d < D`` (2: stay / advance, 3: with the CTC skip)
BAND_WIDTHS = (2, 3)

#: the widest band the fast path handles (``d < MAX_BAND``)
MAX_BAND = BAND_WIDTHS[-1]

#: the ELL slot counts with a row function of their own: a state's in- (out-)
#: degree is rounded up to the next
ELL_WIDTHS = (1, 2, 3, 4, 6, 8)

#: the largest degree the ELL layout handles; states with more arcs run the CSR loops
ELL_MAX_DEGREE = ELL_WIDTHS[-1]

#: the kernels index frames, classes, states, arcs and workspace rows with C ints
INT32_MAX = 2**31 - 1

#: the names ``setup.py`` hands to the Tempita templates
TEMPLATE_NAMES = ("BAND_PAD", "BAND_WIDTHS", "ELL_WIDTHS")

assert BAND_PAD == MAX_BAND - 1, "the padding must cover the widest band"

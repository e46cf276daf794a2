"""Every output of the engine on one problem, and a bit-for-bit comparison of two such
sets: the kernels' fast paths (banded, ELL), thread counts and concurrent calls must
all agree to the last bit."""

import lattice

VITERBI_FIELDS = ("score", "states", "labels", "arcs", "tokens", "starts", "ends",
                  "num_segments")


def all_outputs(emissions, graphs, lengths, **weights):
    """forward (log and max), every field of forward_backward and of viterbi, by name;
    ``weights`` are passed to each (``arc_weights=...`` and so on)."""
    out = {f"forward_{sr}": lattice.forward(emissions, graphs, lengths, sr, **weights)
           for sr in ("log", "max")}
    fb = lattice.forward_backward(emissions, graphs, lengths, **weights)
    out.update({f"fb_{name}": value for name, value in zip(fb._fields, fb)})
    ali = lattice.viterbi(emissions, graphs, lengths, **weights)
    out.update({f"viterbi_{name}": getattr(ali, name) for name in VITERBI_FIELDS})
    return out


def assert_same_bits(actual, expected):
    """Both dicts of outputs hold the same arrays, dtype and bits."""
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert actual[name].dtype == value.dtype, name
        assert actual[name].tobytes() == value.tobytes(), name

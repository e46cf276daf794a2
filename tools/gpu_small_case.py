"""A small run of every GPU kernel on CuPy arrays, for compute-sanitizer
(tools/gpu_check.sh): racecheck finds shared-memory races, memcheck out-of-bounds
reads and writes. Exits 1 if a result differs from the CPU engine's."""

import sys

import cupy
import numpy as np

import lattice

rng = np.random.default_rng(0)
em = rng.standard_normal((3, 25, 6))
graphs = [lattice.build("ctc", [1, 2, 3]), lattice.build("segmentation", [4, 5]),
          lattice.build("hmm", [1, 2], states=2)]
lengths = [25, 17, 9]
gb = lattice.batch(graphs)
arc = rng.standard_normal((3, 25, gb.max_arcs))
ok = True
for dtype in (np.float32, np.float64):
    e = em.astype(dtype)
    d = cupy.asarray(e)
    for kwargs in ({}, {"arc_weights": arc}):
        want = lattice.forward_backward(e, gb, lengths, **kwargs)
        got = lattice.forward_backward(d, gb, lengths, **kwargs)
        ok &= all(np.allclose(cupy.asnumpy(g), w, atol=1e-5) for g, w in zip(got, want))
        ok &= np.allclose(cupy.asnumpy(lattice.forward(d, gb, lengths, "max", **kwargs)),
                          lattice.forward(e, gb, lengths, "max", **kwargs))
        ok &= np.array_equal(cupy.asnumpy(lattice.viterbi(d, gb, lengths, **kwargs).states),
                             lattice.viterbi(e, gb, lengths, **kwargs).states)
        lattice.forward_backward(d, gb, lengths, "max", **kwargs)
cupy.cuda.Device().synchronize()
print("small case:", "equal to the CPU engine" if ok else "DIFFERS from the CPU engine")
sys.exit(0 if ok else 1)

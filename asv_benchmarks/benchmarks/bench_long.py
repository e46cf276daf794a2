"""Long inputs (issue 18): forward-backward and Viterbi on one long CTC utterance,
with the full tables against checkpoints (lattice.memory). B=1, C=32, float32;
forward-backward T=20,000 frames with 2,000 tokens (S=4,001: a 320 MB alpha table),
Viterbi T=60,000 with 3,000 tokens (S=6,001: 360 MB of backpointers). The peak
memory is the whole process's (the emissions, gradients and graph included)."""

import numpy as np

import lattice

from .common import SMOKE, set_threads

FB_FRAMES, FB_TOKENS = 20_000, 2_000
VITERBI_FRAMES, VITERBI_TOKENS = 60_000, 3_000
CLASSES = 32
if SMOKE:
    FB_FRAMES, FB_TOKENS, VITERBI_FRAMES, VITERBI_TOKENS = 400, 40, 600, 60

_CHECKPOINT = {"full": False, "checkpoint": True}


def _utterance(frames, tokens, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, frames, CLASSES)).astype(np.float32)
    log_probs = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return log_probs, lattice.batch([lattice.build("ctc", rng.integers(1, CLASSES, tokens))])


class LongInput:
    params = (["forward_backward", "viterbi"], ["full", "checkpoint"])
    param_names = ["pass", "table"]
    number = 1
    repeat = 3
    timeout = 600

    def setup(self, kind, table):
        if kind == "forward_backward":
            self.emissions, self.graphs = _utterance(FB_FRAMES, FB_TOKENS, 0)
            self.run = lattice.forward_backward
        else:
            self.emissions, self.graphs = _utterance(VITERBI_FRAMES, VITERBI_TOKENS, 1)
            self.run = lattice.viterbi
        self.checkpoint = _CHECKPOINT[table]
        set_threads(1)  # one example: one thread works

    def time_pass(self, kind, table):
        self.run(self.emissions, self.graphs, checkpoint=self.checkpoint)

    def peakmem_pass(self, kind, table):
        self.run(self.emissions, self.graphs, checkpoint=self.checkpoint)

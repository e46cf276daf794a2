"""``lattice speech-bench``: alignment accuracy on synthetic speech with true word
times.

:mod:`lattice.speech.espeak` speaks texts with espeak-ng and reports where each
word starts and ends; :mod:`lattice.speech.corpus` makes a cached corpus of such
utterances with log-mel features (:mod:`lattice.speech.features`);
:mod:`lattice.speech.bench` trains one small acoustic model per topology (CTC, CTC
with a delay penalty, an HMM with minimum durations, segmentation), force-aligns
the held-out utterances with each and measures the word boundaries against the
truth in milliseconds. torch is imported only when training.
"""

"""Log-mel features of a waveform, in numpy.

Frames are centred on multiples of ``hop`` samples (the signal is padded by half a
window at both ends), so frame ``k`` stands for time ``k * hop / rate`` and the
boundary between frames ``k - 1`` and ``k`` lies at ``(k - 0.5) * hop / rate``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["frame_times", "log_mel", "mel_filters"]


def mel_filters(rate, n_fft, bands, low=60.0, high=None):
    """Triangular filters, evenly spaced on the mel scale: (bands, n_fft // 2 + 1).

    Examples
    --------
    >>> from lattice.speech.features import mel_filters
    >>> f = mel_filters(16000, 512, 40)
    >>> f.shape, bool((f.sum(axis=0) <= 1 + 1e-9).all())
    ((40, 257), True)
    """
    high = rate / 2 if high is None else high
    mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(low), mel(high), bands + 2))
    freqs = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None)


def log_mel(audio, rate, hop=None, n_fft=512, bands=40):
    """Log-mel energies of ``audio``: (frames, bands) float32, one frame every
    ``hop`` samples (default 10 ms) with a Hann window of ``n_fft`` samples.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.speech.features import log_mel
    >>> x = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)
    >>> log_mel(x, 22050).shape
    (101, 40)
    """
    audio = np.asarray(audio, dtype=np.float64)
    hop = int(round(rate / 100)) if hop is None else int(hop)
    padded = np.pad(audio, (n_fft // 2, n_fft // 2))
    count = 1 + (padded.shape[0] - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    frames = padded[index] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    energies = power @ mel_filters(rate, n_fft, bands).T
    return np.log(energies + 1e-8).astype(np.float32)


def frame_times(frames, rate, hop=None):
    """The boundary times (seconds) before each frame index in ``frames``: frame
    ``k`` starts at ``(k - 0.5) * hop / rate``, at least 0.

    Examples
    --------
    >>> from lattice.speech.features import frame_times
    >>> frame_times([0, 1, 10], 100, hop=1).tolist()
    [0.0, 0.005, 0.095]
    """
    hop = int(round(rate / 100)) if hop is None else int(hop)
    return np.maximum((np.asarray(frames, dtype=np.float64) - 0.5) * hop / rate, 0.0)

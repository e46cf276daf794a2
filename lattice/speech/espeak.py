"""Speech with exact word times, from the espeak-ng synthesiser.

espeak-ng (GPL; Debian's ``espeak-ng`` package) is called at run time through its C
library, never bundled: :func:`synthesize` turns a text into samples and reports
where every phoneme starts, from which the word onsets and offsets follow. A word
starts at its first phoneme and ends where the next phoneme (of the next word, or a
pause) starts. Nothing else of lattice needs espeak-ng; without it,
:func:`synthesize` raises :class:`EspeakMissing`, which says how to install it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import NamedTuple

import numpy as np

__all__ = ["EspeakMissing", "Utterance", "available", "synthesize"]

INSTALL_HINT = "install espeak-ng (Debian / Ubuntu: apt-get install espeak-ng)"

# speak_lib.h
_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS
_PHONEME_EVENTS = 0x0001  # espeakINITIALIZE_PHONEME_EVENTS
_DONT_EXIT = 0x8000  # espeakINITIALIZE_DONT_EXIT
_EVENT_END_OF_LIST, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7
_RATE, _PITCH = 1, 3  # espeakRATE (words per minute), espeakPITCH (0-100)
_POS_CHARACTER = 1


class EspeakMissing(RuntimeError):
    """espeak-ng's library is not installed (the message says how to install it)."""


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p),
                ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))
_LOCK = threading.Lock()  # the library keeps one global synthesis state
_STATE = {}


def _library():
    """(the library, its sample rate), loaded and initialised once."""
    if "lib" not in _STATE:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as error:
            raise EspeakMissing(f"espeak-ng's library was not found; {INSTALL_HINT}") from error
        rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, None, _PHONEME_EVENTS | _DONT_EXIT)
        if rate <= 0:
            raise EspeakMissing(f"espeak-ng failed to initialise ({rate}); {INSTALL_HINT}")
        chunks, events = [], []

        def collect(wav, count, event):
            if count > 0:
                chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
            i = 0
            while event[i].type != _EVENT_END_OF_LIST:
                e = event[i]
                if e.type in (_EVENT_WORD, _EVENT_PHONEME):
                    events.append((e.type, e.text_position, e.sample,
                                   e.id.string.decode("ascii", "replace")
                                   if e.type == _EVENT_PHONEME else ""))
                i += 1
            return 0

        callback = _CALLBACK(collect)
        lib.espeak_SetSynthCallback(callback)
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        _STATE.update(lib=lib, rate=rate, callback=callback, chunks=chunks,
                      events=events)
    return _STATE["lib"], _STATE["rate"]


def available():
    """Whether espeak-ng's library can be loaded here.

    Examples
    --------
    >>> from lattice.speech import espeak
    >>> isinstance(espeak.available(), bool)
    True
    """
    try:
        _library()
    except EspeakMissing:
        return False
    return True


class Utterance(NamedTuple):
    """One synthesised text: ``audio`` (float32 in [-1, 1]), ``rate`` (Hz),
    ``words`` (the words, in order) and their ``onsets`` and ``offsets`` (seconds)."""

    audio: np.ndarray
    rate: int
    words: tuple
    onsets: np.ndarray
    offsets: np.ndarray


def synthesize(words, voice="en", speed=175, pitch=50):
    """Speak ``words`` (lower-case ASCII words, one string each) with espeak-ng.

    Parameters
    ----------
    words : sequence of str
    voice : str
        An espeak-ng voice, e.g. ``"en"``, ``"en+m3"``, ``"en+f2"`` (the ``+variant``
        voices change the timbre).
    speed : int
        Words per minute (80 to 450).
    pitch : int
        Base pitch, 0 to 100.

    Returns
    -------
    Utterance

    Raises
    ------
    EspeakMissing
        Without espeak-ng.
    ValueError
        For an empty text, a word that is not lower-case ASCII letters, or a word
        espeak-ng did not speak as one word.

    Examples
    --------
    >>> from lattice.speech import espeak
    >>> u = espeak.synthesize(["three", "seven"])  # doctest: +SKIP
    >>> u.words, u.onsets.round(2).tolist()  # doctest: +SKIP
    (('three', 'seven'), [0.0, 0.23])
    """
    words = tuple(words)
    if not words or not all(w.isascii() and w.isalpha() and w.islower() for w in words):
        raise ValueError(f"words must be non-empty lower-case ASCII words, got {words!r}")
    text = " ".join(words).encode("ascii")
    with _LOCK:
        lib, rate = _library()
        chunks, events = _STATE["chunks"], _STATE["events"]
        chunks.clear()
        events.clear()
        if lib.espeak_SetVoiceByName(voice.encode("ascii")) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        lib.espeak_SetParameter(_RATE, int(speed), 0)
        lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        lib.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, 0, None, None)
        lib.espeak_Synchronize()
        audio = (np.concatenate(chunks) if chunks else np.zeros(0, np.int16))
        found = list(events)
    audio = audio.astype(np.float32) / 32768.0
    # the text position (1-based) of each word, and the phonemes at each position
    starts = [1 + sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]
    phonemes = [(pos, sample, name) for kind, pos, sample, name in found
                if kind == _EVENT_PHONEME]
    onsets, offsets = [], []
    for pos in starts:
        own = [i for i, (p, _, name) in enumerate(phonemes)
               if p == pos and not name.startswith("_")]
        if not own:
            raise ValueError(f"espeak-ng did not speak the word at position {pos} of "
                             f"{text.decode()!r} as a word of its own")
        onsets.append(phonemes[own[0]][1])
        after = own[-1] + 1
        offsets.append(phonemes[after][1] if after < len(phonemes) else audio.shape[0])
    return Utterance(audio, int(rate), words, np.asarray(onsets) / rate,
                     np.asarray(offsets) / rate)

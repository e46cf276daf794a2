"""The ``lattice demo``: read synthetic handwritten digit strings with a CTC-trained BiLSTM.

The task is made up on the fly. Each example is a line of digits drawn from a small
bitmap font, read column by column like a scanned line of handwriting: every glyph
column is one or two columns wide (random durations), glyphs are separated by gaps of
random width, shifted up or down, drawn with random ink strength and buried in
Gaussian noise. A small bidirectional LSTM reads the columns and emits, per frame,
log-probabilities over the blank and the ten digits; it is trained with lattice's
:class:`~lattice.torch.CTCLoss` (or :class:`~lattice.torch.ViterbiLoss`, or
:class:`~lattice.torch.MMILoss` against a bigram denominator), and evaluated on
held-out lines with greedy and prefix-beam decoding (:mod:`lattice.decode`).

Run it with ``lattice demo`` (or ``python -m lattice demo``; the command line is
:mod:`lattice.cli.demo`); ``lattice demo --help`` lists the options. This module is an
application of lattice, not a part of it: nothing in lattice's core imports it, and it
imports torch only when :func:`run` is called. torch is needed (``pip install "lattice[demo]"``); matplotlib draws
the figure and tqdm the progress bar when they are installed.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import build, decode, num_threads
from .plot import pyplot

__all__ = [
    "BLANK",
    "DemoConfig",
    "DemoResult",
    "FONT",
    "STRIDE",
    "SYMBOLS",
    "render",
    "run",
    "synthesize",
]

#: Emission classes of the demo model: the blank, then the digits 0-9.
SYMBOLS = ("<blank>",) + tuple("0123456789")
#: The class id of the blank.
BLANK = 0
#: Input columns per output frame of the demo model (its first convolution's stride).
STRIDE = 2

_FONT_ROWS = {
    0: ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    1: ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    2: ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    3: ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    4: ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    5: ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    6: ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    7: ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    8: ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    9: ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
}
#: The 5 x 7 bitmap of each digit, shape (10, 7, 5), ink = 1.
FONT = np.array(
    [[[int(c) for c in row] for row in _FONT_ROWS[d]] for d in range(10)], dtype=np.float32
)


@dataclass
class DemoConfig:
    """Everything that defines a demo run; the defaults are the README's run.

    Attributes
    ----------
    epochs : int
        Passes of ``steps_per_epoch`` steps; fresh training lines are drawn each epoch.
    steps_per_epoch, batch_size : int
    eval_size : int
        Held-out lines scored after every epoch.
    loss : {"ctc", "viterbi", "mmi"}
        Sum over all alignments (:class:`~lattice.torch.CTCLoss`), train along the
        best one (:class:`~lattice.torch.ViterbiLoss`), or MMI / CTC-CRF
        (:class:`~lattice.torch.MMILoss`): each line's CTC score against a
        denominator shared by every line, the CTC topology over a bigram of
        digits estimated, at the start of the run, from ``mmi_transcripts``
        transcripts drawn like the training lines (a graph of 21 states and 231
        arcs; drawing them takes about 0.2 s).
    ctc_weight : float
        With ``loss="mmi"``: the weight of the CTC loss added to the MMI loss
        (default 0.1). Measured at the other defaults: 0 and 0.1 both reached a
        greedy CER of 0.6-0.95% on seeds 0, 1 and 2 (CTC: 1.4-1.65%); larger
        weights often stayed on the all-blank plateau (0.25: 12% on seed 0; 0.5:
        75-87% on seeds 0 and 2; 1: 82% on seed 0).
    mmi_transcripts : int
        With ``loss="mmi"``: transcripts the bigram denominator is estimated from
        (default 1000).
    viterbi_warmup : int
        With ``loss="viterbi"``: epochs trained with CTC first (default 3). Viterbi
        training learns from the model's own best alignments, and those of an
        untrained model are arbitrary: from scratch (0), or from a model still on the
        all-blank plateau (1), it mostly locks into them (CER 70-90%).
    hidden : int
        LSTM units per direction.
    lr : float
        Peak Adam learning rate (one-cycle schedule).
    beam_width : int
        Beam of the prefix beam search evaluation.
    columns, height : int
        Width and height of a line in pixels; the model reads it column by column and
        emits one frame per ``STRIDE`` (2) columns.
    min_digits, max_digits : int
        Digits per line.
    noise : float
        Standard deviation of the pixel noise.
    seed : int
        Seeds the data, the initial weights and the batch order.
    threads : int or None
        torch intra-op threads (default 1: the model is small, and on a busy machine
        a second OpenMP thread waiting for a core costs more than it brings).

    Examples
    --------
    >>> from lattice.demo import DemoConfig
    >>> DemoConfig(epochs=2).epochs
    2
    """

    epochs: int = 12
    steps_per_epoch: int = 100
    batch_size: int = 32
    eval_size: int = 200
    loss: str = "ctc"
    hidden: int = 64
    lr: float = 1e-2
    beam_width: int = 8
    columns: int = 72
    height: int = 11
    min_digits: int = 3
    max_digits: int = 7
    noise: float = 0.2
    viterbi_warmup: int = 3
    ctc_weight: float = 0.1
    mmi_transcripts: int = 1000
    seed: int = 0
    threads: int | None = None

    def __post_init__(self):
        for name in ("epochs", "steps_per_epoch", "batch_size", "eval_size", "hidden",
                     "beam_width", "columns", "min_digits", "max_digits",
                     "mmi_transcripts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.height < FONT.shape[1]:
            raise ValueError(f"height must be >= {FONT.shape[1]} (the glyph height)")
        if self.max_digits < self.min_digits:
            raise ValueError("max_digits must be >= min_digits")
        narrowest = self.max_digits * (FONT.shape[2] + 1) - 1
        if self.columns < narrowest + 8:
            raise ValueError(
                f"columns must be >= {narrowest + 8} to fit {self.max_digits} digits"
            )
        warmup = self.viterbi_warmup
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"viterbi_warmup must be a non-negative int, got {warmup!r}")
        if self.loss == "viterbi" and warmup >= self.epochs:
            raise ValueError(
                f"viterbi_warmup ({warmup}) must be below epochs ({self.epochs}) with "
                "loss='viterbi', or no epoch trains with the Viterbi loss"
            )
        if self.loss not in ("ctc", "viterbi", "mmi"):
            raise ValueError(f"loss must be 'ctc', 'viterbi' or 'mmi', got {self.loss!r}")
        weight = self.ctc_weight
        if (isinstance(weight, bool) or not isinstance(weight, (int, float))
                or not 0 <= weight < float("inf")):
            raise ValueError(f"ctc_weight must be a finite number >= 0, got {weight!r}")
        if not (self.lr > 0) or not (self.noise >= 0):
            raise ValueError("lr must be > 0 and noise >= 0")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int)
            or self.threads < 1
        ):
            raise ValueError(f"threads must be a positive int or None, got {self.threads!r}")


def render(digits, rng, columns=72, height=11, noise=0.2):
    """Draw one line of ``digits`` as a (columns, height) float32 array.

    Parameters
    ----------
    digits : sequence of int
        Digits 0-9.
    rng : numpy.random.Generator
    columns, height : int
        Line width and height in pixels; the text starts 0-4 columns from the left
        and the rest is background.
    noise : float
        Standard deviation of the Gaussian pixel noise.

    Returns
    -------
    ndarray of float32, shape (columns, height)

    Raises
    ------
    ValueError
        If the digits do not fit in ``columns`` columns.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.demo import render
    >>> line = render([4, 2], np.random.default_rng(0), columns=30, noise=0.0)
    >>> line.shape, line.dtype.name
    ((30, 11), 'float32')
    >>> int((line.sum(axis=1) > 0).sum()) >= 10        # columns with ink
    True
    """
    glyph_h, glyph_w = FONT.shape[1:]
    strokes = []  # per column: (digit, glyph column, vertical shift, ink) or None
    for i, d in enumerate(digits):
        if i:
            strokes.extend([None] * int(rng.integers(1, 4)))  # gap of 1-3 columns
        shift = int(rng.integers(0, height - glyph_h + 1))
        ink = float(rng.uniform(0.7, 1.0))
        for col in range(glyph_w):
            for _ in range(1 + int(rng.random() < 0.35)):  # 1 or 2 columns wide
                strokes.append((int(d), col, shift, ink))
    if len(strokes) > columns:
        raise ValueError(f"{len(digits)} digits need {len(strokes)} columns, got {columns}")
    line = np.zeros((columns, height), dtype=np.float32)
    offset = int(rng.integers(0, min(4, columns - len(strokes)) + 1))  # left margin
    for t, stroke in enumerate(strokes, offset):
        if stroke is not None:
            d, col, shift, ink = stroke
            line[t, shift : shift + glyph_h] = FONT[d, :, col] * ink
    if noise:
        line += rng.normal(0.0, noise, size=line.shape).astype(np.float32)
    return line


def synthesize(n, rng, config=None):
    """Draw ``n`` random lines and their digit strings.

    Parameters
    ----------
    n : int
    rng : numpy.random.Generator
    config : DemoConfig, optional
        Line size, digit counts and noise (defaults: ``DemoConfig()``).

    Returns
    -------
    inputs : ndarray of float32, shape (n, columns, height)
    targets : list of ndarray of int64
        The class ids of each line: digit ``d`` is class ``d + 1`` (0 is the blank).

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.demo import synthesize
    >>> x, y = synthesize(3, np.random.default_rng(0))
    >>> x.shape, [len(t) for t in y]
    ((3, 72, 11), [7, 3, 5])
    >>> bool(all(1 <= c <= 10 for t in y for c in t))
    True
    """
    config = config or DemoConfig()
    inputs = np.empty((n, config.columns, config.height), dtype=np.float32)
    targets = []
    for i in range(n):
        k = int(rng.integers(config.min_digits, config.max_digits + 1))
        digits = rng.integers(0, 10, size=k)
        while True:  # random durations rarely make a line too wide: draw it again
            try:
                inputs[i] = render(digits, rng, config.columns, config.height,
                                   config.noise)
                break
            except ValueError:
                continue
        targets.append(digits.astype(np.int64) + 1)
    return inputs, targets


@dataclass
class DemoResult:
    """What :func:`run` measured.

    Attributes
    ----------
    config : DemoConfig
    history : dict of str to list of float
        Per epoch: ``"train_loss"`` (mean over the epoch), ``"eval_loss"``,
        ``"cer_greedy"``, ``"cer_beam"``, ``"seconds"`` (elapsed since the start).
    step_losses : list of float
        The training loss of every step.
    seconds : float
        Wall time of the whole run (data, training, evaluation, figure).
    figure : str or None
        Where the PNG was written.
    eval_targets : list of list of int
        The held-out transcripts (class ids), in the order of the saved emissions.

    Examples
    --------
    >>> from lattice.demo import DemoConfig, DemoResult
    >>> r = DemoResult(DemoConfig(), {"cer_greedy": [0.5, 0.1]}, [], 1.0, None)
    >>> r.cer_greedy
    0.1
    """

    config: DemoConfig
    history: dict
    step_losses: list
    seconds: float
    figure: str | None = None
    eval_targets: list = field(default_factory=list, repr=False)

    @property
    def cer_greedy(self):
        """Character error rate of greedy decoding after the last epoch."""
        return self.history["cer_greedy"][-1]

    @property
    def cer_beam(self):
        """Character error rate of prefix beam search after the last epoch."""
        return self.history["cer_beam"][-1]


def _model(config, torch):
    class Reader(torch.nn.Module):
        """Strided conv front end, one bidirectional LSTM layer, linear, log_softmax."""

        def __init__(self):
            super().__init__()
            # one output frame per STRIDE columns
            self.conv = torch.nn.Conv1d(config.height, config.hidden, 3, padding=1,
                                        stride=STRIDE)
            self.lstm = torch.nn.LSTM(config.hidden, config.hidden, bidirectional=True)
            self.out = torch.nn.Linear(2 * config.hidden, len(SYMBOLS))

        def forward(self, x):  # x: (B, columns, H) -> (frames, B, C) log-probabilities
            h = torch.relu(self.conv(x.transpose(1, 2)))  # (B, hidden, frames)
            h, _ = self.lstm(h.permute(2, 0, 1))  # (frames, B, 2 hidden)
            return self.out(h).log_softmax(-1)

    return Reader()


class _Progress:
    """tqdm when it is installed, else a plain one-line counter on stderr."""

    def __init__(self, total, desc, enabled):
        self.bar = None
        self.total, self.desc, self.enabled, self.n = total, desc, enabled, 0
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # the plain counter, on terminals only
            self.enabled = sys.stderr.isatty()
            return
        # disable=None: no bar when stderr is not a terminal (logs, CI)
        self.bar = tqdm(total=total, desc=desc, leave=False, unit="step",
                        dynamic_ncols=True, file=sys.stderr, disable=None)

    def update(self, loss):
        self.n += 1
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            self.bar.update(1)
        elif self.enabled and (self.n % 10 == 0 or self.n == self.total):
            print(f"\r{self.desc}: {self.n}/{self.total} loss {loss:.3f}", end="",
                  file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)


def run(config=None, out=None, save_emissions=None, save_transcripts=None,
        save_symbols=None, quiet=False, progress=True, log=None):
    """Train the demo model and report the loss and character error rates per epoch.

    Parameters
    ----------
    config : DemoConfig, optional
    out : str or path, optional
        Write the figure (loss curves; the posteriors of one held-out line with its
        Viterbi alignment) to this PNG. Needs matplotlib.
    save_emissions : str or path, optional
        Save the trained model's log-probabilities on the held-out lines, a float32
        ``.npy`` array of shape (eval_size, columns // 2, 11), for ``lattice align``.
    save_transcripts : str or path, optional
        Save the held-out digit strings, one line each.
    save_symbols : str or path, optional
        Save the symbol table (``symbol id`` per line: ``<blank> 0``, ``0 1``, ...).
    quiet : bool, default False
        Print nothing (no progress bar, no per-epoch lines).
    progress : bool, default True
        Show a progress bar (tqdm if installed) while training.
    log : callable, optional
        Receives each report line (default: ``print``).

    Returns
    -------
    DemoResult

    Raises
    ------
    ImportError
        If torch (or, with ``out``, matplotlib) is not installed.
    FileNotFoundError
        If the folder of an output path does not exist (checked before training).

    Notes
    -----
    The run is deterministic given ``config.seed`` and ``config.threads``. It uses its
    own torch random state (the caller's is left as it was) and restores the torch
    and lattice thread settings when it returns.

    Examples
    --------
    A tiny configuration (the real run is ``lattice demo``):

    >>> from lattice.demo import DemoConfig, run
    >>> cfg = DemoConfig(epochs=1, steps_per_epoch=2, batch_size=4, eval_size=4,
    ...                  hidden=8, threads=1)
    >>> result = run(cfg, quiet=True)
    >>> sorted(result.history)
    ['cer_beam', 'cer_greedy', 'eval_loss', 'seconds', 'train_loss']
    >>> len(result.step_losses)
    2
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the demo trains a torch model: install it with "
            "pip install torch \"lattice[demo]\""
        ) from exc
    from .torch import CTCLoss, MMILoss, ViterbiLoss

    config = config or DemoConfig()
    # fail now rather than after training
    if out is not None:
        pyplot()
    for path in (out, save_emissions, save_transcripts, save_symbols):
        if path is not None:
            folder = os.path.dirname(os.path.abspath(os.fspath(path)))
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"cannot write {os.fspath(path)!r}: no folder {folder!r}")
    say = (lambda *a: None) if quiet else (log or print)
    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads or 1)
    try:
        # the CTC lattices are tiny next to the LSTM: run them on the calling thread,
        # so lattice's OpenMP team and torch's do not fight over the cores
        with num_threads(1), torch.random.fork_rng(devices=[]):
            return _train(config, torch, (CTCLoss, ViterbiLoss, MMILoss), out,
                          save_emissions, save_transcripts, save_symbols, say,
                          progress and not quiet, start)
    finally:
        torch.set_num_threads(previous_threads)


def _train(config, torch, losses, out, save_emissions, save_transcripts, save_symbols,
           say, progress, start):
    CTCLoss, ViterbiLoss, MMILoss = losses
    # a fourth stream for the MMI denominator's transcripts leaves the first three
    # (and so the ctc and viterbi runs) as they were
    seeds = np.random.SeedSequence(config.seed).spawn(4)
    train_rng = np.random.default_rng(seeds[0])
    eval_x, eval_y = synthesize(config.eval_size, np.random.default_rng(seeds[1]), config)
    torch.manual_seed(int(seeds[2].generate_state(1)[0]))
    model = _model(config, torch)
    total_steps = config.epochs * config.steps_per_epoch
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.15
    )
    ctc, viterbi_loss = CTCLoss(blank=BLANK), ViterbiLoss(blank=BLANK)
    frames = (config.columns - 1) // STRIDE + 1  # the model's output frames
    scheme = ("CTC loss" if config.loss == "ctc" else
              f"Viterbi loss after {config.viterbi_warmup} CTC warm-up epoch(s)")
    mmi = None
    if config.loss == "mmi":
        # the shared denominator: a bigram of digits from transcripts drawn like
        # the training lines (not the training lines themselves, which are drawn
        # fresh every epoch)
        _, sample = synthesize(config.mmi_transcripts, np.random.default_rng(seeds[3]),
                               config)
        denominator = build("ctc_denominator", sample, num_tokens=len(SYMBOLS),
                            blank=BLANK, order=2)
        mmi = MMILoss(denominator, blank=BLANK, ctc_weight=config.ctc_weight)
        scheme = (f"MMI loss (+ {config.ctc_weight:g} x CTC) against a bigram "
                  f"denominator of {config.mmi_transcripts} transcripts "
                  f"({denominator.num_states} states, {denominator.num_arcs} arcs)")
    say(f"lattice demo: reading synthetic digit strings, {scheme}, "
        f"{config.epochs} epochs x {config.steps_per_epoch} steps x {config.batch_size} "
        f"lines, {torch.get_num_threads()} torch threads")

    history = {k: [] for k in ("train_loss", "eval_loss", "cer_greedy", "cer_beam", "seconds")}
    step_losses = []
    eval_inputs = torch.from_numpy(eval_x)
    eval_refs = [t.tolist() for t in eval_y]
    eval_targets = torch.from_numpy(_pad(eval_y))
    eval_target_lengths = torch.tensor([len(t) for t in eval_y])
    eval_lengths = torch.full((config.eval_size,), frames)
    log_probs = None
    for epoch in range(1, config.epochs + 1):
        viterbi_epoch = config.loss == "viterbi" and epoch > config.viterbi_warmup
        criterion = mmi if mmi is not None else viterbi_loss if viterbi_epoch else ctc
        model.train()
        bar = _Progress(config.steps_per_epoch, f"epoch {epoch}/{config.epochs}", progress)
        epoch_losses = []
        for _ in range(config.steps_per_epoch):
            x, y = synthesize(config.batch_size, train_rng, config)
            lp = model(torch.from_numpy(x))  # (frames, B, C)
            loss = criterion(lp, torch.from_numpy(_pad(y)),
                             torch.full((config.batch_size,), frames),
                             torch.tensor([len(t) for t in y]))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            schedule.step()
            epoch_losses.append(float(loss.detach()))
            bar.update(epoch_losses[-1])
        bar.close()
        step_losses.extend(epoch_losses)
        model.eval()
        with torch.no_grad():
            log_probs = model(eval_inputs)  # (T, B, C)
            eval_loss = float(ctc(log_probs, eval_targets, eval_lengths,
                                             eval_target_lengths))
        bt = log_probs.transpose(0, 1).numpy()  # (B, T, C)
        greedy = decode.ctc_greedy(bt, blank=BLANK)
        beam = [h[0].tokens for h in decode.ctc_beam_search(
            bt, beam_width=config.beam_width, blank=BLANK)]
        history["train_loss"].append(float(np.mean(epoch_losses)))
        history["eval_loss"].append(eval_loss)
        history["cer_greedy"].append(decode.error_rate(greedy, eval_refs))
        history["cer_beam"].append(decode.error_rate(beam, eval_refs))
        history["seconds"].append(time.perf_counter() - start)
        name = "MMI" if mmi is not None else "Viterbi" if viterbi_epoch else "CTC"
        say(f"epoch {epoch:2d}/{config.epochs}  train {name} loss "
            f"{history['train_loss'][-1]:.4f}  "
            f"held-out CTC loss {eval_loss:.4f}  CER greedy "
            f"{100 * history['cer_greedy'][-1]:5.2f}%  beam "
            f"{100 * history['cer_beam'][-1]:5.2f}%  ({history['seconds'][-1]:.0f} s)")

    bt = log_probs.transpose(0, 1).contiguous().numpy()
    if save_emissions is not None:
        np.save(save_emissions, bt.astype(np.float32))
        say(f"saved held-out log-probabilities {bt.shape} to {save_emissions}")
    if save_transcripts is not None:
        with open(save_transcripts, "w", encoding="utf-8") as f:
            for ref in eval_refs:
                f.write("".join(SYMBOLS[c] for c in ref) + "\n")
        say(f"saved {len(eval_refs)} transcripts to {save_transcripts}")
    if save_symbols is not None:
        with open(save_symbols, "w", encoding="utf-8") as f:
            for i, s in enumerate(SYMBOLS):
                f.write(f"{s} {i}\n")
        say(f"saved the symbol table to {save_symbols}")
    result = DemoResult(config, history, step_losses, 0.0, None, eval_refs)
    if out is not None:
        _figure(result, eval_x[0], bt[0], eval_refs[0], out)
        result.figure = str(out)
    result.seconds = time.perf_counter() - start
    say(f"done in {result.seconds:.1f} s: CER greedy {100 * result.cer_greedy:.2f}%, "
        f"beam {100 * result.cer_beam:.2f}%" + (f"; figure: {out}" if out else ""))
    return result


def _pad(targets):
    width = max(1, max(len(t) for t in targets))
    padded = np.zeros((len(targets), width), dtype=np.int64)
    for i, t in enumerate(targets):
        padded[i, : len(t)] = t
    return padded


def _figure(result, line, log_probs, target, path):
    """Input line, posteriors with the Viterbi alignment, and the learning curves."""
    from . import build, viterbi
    from .plot import plot_losses, plot_posteriors

    plt = pyplot()
    ali = viterbi(log_probs[None].astype(np.float64), [build("ctc", target, blank=BLANK)])
    fig = plt.figure(figsize=(11, 7.5), layout="constrained")
    grid = fig.add_gridspec(3, 2, height_ratios=[1, 2.2, 2.2])
    ax_in = fig.add_subplot(grid[0, :])
    frames = log_probs.shape[0]
    ax_in.imshow(line.T, aspect="auto", cmap="Greys", interpolation="nearest",
                 extent=(-0.5, line.shape[0] / STRIDE - 0.5, line.shape[1] - 0.5, -0.5))
    ax_in.set_xlim(-0.5, frames - 0.5)
    ax_in.set_title("held-out input line, transcript " + "".join(SYMBOLS[c] for c in target)
                    + f" ({STRIDE} pixel columns per frame)")
    ax_in.set_ylabel("pixel")
    ax_in.tick_params(labelbottom=False)
    ax_post = fig.add_subplot(grid[1, :], sharex=ax_in)
    plot_posteriors(np.exp(log_probs), path=ali.labels[0], ax=ax_post, symbols=SYMBOLS,
                    title="model posteriors and the Viterbi alignment of the transcript")
    h = result.history
    epochs = np.arange(1, len(h["train_loss"]) + 1)
    ax_loss = fig.add_subplot(grid[2, 0])
    steps = np.arange(1, len(result.step_losses) + 1) / result.config.steps_per_epoch
    plot_losses({"train (per step)": (steps, result.step_losses),
                 "train (epoch mean)": (epochs, h["train_loss"]),
                 "held-out CTC": (epochs, h["eval_loss"])},
                ax=ax_loss, xlabel="epoch", ylabel="loss per symbol",
                title="CTC training", log=True)
    if result.config.loss == "mmi":
        ax_loss.set_title(f"MMI training (+ {result.config.ctc_weight:g} x CTC)")
    if result.config.loss == "viterbi":
        warmup = result.config.viterbi_warmup
        ax_loss.set_title(f"Viterbi training after {warmup} CTC epoch(s)")
        if warmup:
            ax_loss.axvline(warmup, color="0.4", linestyle="--", linewidth=0.8)
    ax_cer = fig.add_subplot(grid[2, 1])
    cer = 100 * np.asarray(h["cer_greedy"] + h["cer_beam"])
    wide = cer.min() > 0 and cer.max() / cer.min() > 10  # log scale for a wide range
    plot_losses({"greedy": (epochs, 100 * np.asarray(h["cer_greedy"])),
                 "beam": (epochs, 100 * np.asarray(h["cer_beam"]))},
                ax=ax_cer, xlabel="epoch", ylabel="CER (%)",
                title="held-out character error rate", log=bool(wide))
    fig.savefig(path, dpi=110)
    plt.close(fig)

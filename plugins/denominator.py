"""The denominator of MMI / CTC-CRF training: the CTC topology over a token n-gram.

One graph for the whole training set (not one per utterance): every labelling of
every frame sequence is one path, weighted by the n-gram probability of the token
sequence it collapses to. :func:`lattice.torch.mmi_loss` uses it as the shared
denominator of every example.
"""

from collections import Counter, deque

import numpy as np

import lattice
from lattice.checks import check_size, int_value, is_real, target_ids

_SMOOTHING = ("witten_bell", "absolute")
_BOS = -1  # the begin-of-sentence item of a history; never a token id


def _check_transcripts(transcripts, num_tokens, blank):
    """The transcripts as a list of lists of ints, each id checked."""
    if isinstance(transcripts, (str, bytes)):
        raise TypeError("transcripts must be a sequence of token sequences, got a "
                        f"{type(transcripts).__name__}")
    try:
        transcripts = list(transcripts)
    except TypeError:
        raise TypeError("transcripts must be a sequence of token sequences, got "
                        f"{type(transcripts).__name__}") from None
    if not transcripts:
        raise ValueError("transcripts must hold at least one transcript (the n-gram "
                         "is estimated from them), got none")
    checked = []
    for i, t in enumerate(transcripts):
        name = f"transcripts[{i}]"
        ids = target_ids(t, name=name)
        for bad, what in ((ids >= num_tokens, f"beyond num_tokens - 1 = {num_tokens - 1}"),
                          (ids == blank, "the blank, which cannot be a token")):
            if bad.any():
                pos = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{name} holds the id {int(ids[pos])} at position "
                                 f"{pos}: {what}")
        checked.append(ids.tolist())
    return checked


class _NGram:
    """Smoothed n-gram probabilities of the tokens and the end of sentence.

    A history is a tuple of at most ``order - 1`` items (token ids, ``_BOS`` first
    at the start of a sentence). ``probs(h)``, for a seen history, is a float64
    vector over the ``num_tokens`` ids in which the blank's slot holds the
    end-of-sentence probability; it sums to 1. An unseen history has the
    probabilities of its longest seen suffix (interpolation gives it nothing of
    its own), which ``next_state`` finds.
    """

    def __init__(self, transcripts, num_tokens, blank, order, smoothing, discount):
        self.num_tokens, self.blank, self.order = num_tokens, blank, order
        self.smoothing, self.discount = smoothing, discount
        pairs = Counter()
        for t in transcripts:
            seq = [_BOS, *t, blank]  # the blank's id stands for the end of sentence
            for i in range(1, len(seq)):
                for m in range(min(order - 1, i) + 1):
                    pairs[tuple(seq[i - m:i]), seq[i]] += 1
        grouped = {}
        for (h, w), c in pairs.items():
            grouped.setdefault(h, ([], []))
            grouped[h][0].append(w)
            grouped[h][1].append(c)
        # history -> (outcome ids, their counts); every suffix of a seen history is
        # seen too (it precedes the same position)
        self.counts = {h: (np.array(w, dtype=np.int64), np.array(c, dtype=np.float64))
                       for h, (w, c) in grouped.items()}
        self._probs = {}

    def probs(self, h):
        p = self._probs.get(h)
        if p is not None:
            return p
        # h is seen (the graph's states are; so are their suffixes and the empty
        # history, which every sentence's end counts in)
        if h:
            lower = self.probs(h[1:])
        else:  # the uniform distribution over the tokens and the end
            lower = np.full(self.num_tokens, 1.0 / self.num_tokens)
        ids, c = self.counts[h]
        total, distinct = c.sum(), float(ids.size)
        own = np.zeros(self.num_tokens)
        if self.smoothing == "witten_bell":
            own[ids] = c
            p = (own + distinct * lower) / (total + distinct)
        else:  # interpolated absolute discounting
            own[ids] = np.maximum(c - self.discount, 0.0)
            p = (own + self.discount * distinct * lower) / total
        self._probs[h] = p
        return p

    def next_state(self, h, c):
        """The longest seen history that ends the token sequence ``h + (c,)``."""
        if self.order == 1:
            return ()
        h = (h + (c,))[-(self.order - 1):]
        while h and h not in self.counts:
            h = h[1:]
        return h


def ctc_denominator(transcripts, num_tokens, blank=0, order=2, smoothing="witten_bell",
                    discount=0.5):
    """The CTC topology over a smoothed token n-gram: the denominator of MMI training.

    One graph for a whole training set, as in CTC-CRF (Xiang & Ou, 2019) and the
    "CTC topology composed with a token LM" denominators of k2 / icefall. A token
    n-gram of order ``order`` is estimated from ``transcripts``; every labelling
    of a frame sequence (a blank or a token per frame) is exactly one path of the
    graph, and the path's weight is the n-gram log-probability of the token
    sequence the labelling collapses to (repeats merged, blanks removed, as in
    CTC). Summed with :func:`lattice.forward` over a model's log-probabilities it
    gives ``log sum_l P_LM(l) p_CTC(l | x)``, the normaliser of
    :func:`lattice.torch.mmi_loss`.

    **States.** An n-gram *history* is the last ``order - 1`` tokens, with a
    begin-of-sentence item at the start (a sentence's first token has the history
    ``<s>``, its second ``<s> t1`` in a trigram, ...). Each history seen in the
    transcripts gets a *token state*, which emits the history's last token (a
    self-loop: the token lasts several frames), and a *blank state* (self-loop);
    the history ``<s>`` has only its blank state, where paths start. Entering
    token ``c`` from history ``h`` (from ``h``'s token state if ``c`` differs from
    its token, else only from ``h``'s blank state: that is how CTC tells "aa"
    from "a") weighs ``log P(c | h)`` and leads to the token state of the longest
    seen history that ends ``h`` followed by ``c``; a history never seen in the
    transcripts is represented by its longest seen suffix, which under
    interpolated smoothing has exactly its probabilities. A token that never
    occurs in the transcripts gets a token state of the empty history (the
    unigram distribution), so every labelling over ``num_tokens`` classes has a
    path. A path may also start in the token state of a first token ``c``,
    weighted ``log P(c | <s>)``; a path ends anywhere, with the weight
    ``log P(</s> | h)`` of the history of its last state as final weight.

    **Size.** With ``V = num_tokens - 1`` tokens and ``H`` the number of states
    of the n-gram (seen histories, plus the empty one if a token is unseen or
    ``order == 1``), the graph has ``S = H + H'`` states (``H'`` token states:
    ``H - 1`` when every token is seen, ``V`` for ``order == 1``) and
    ``S (V + 1)`` arcs (every state has a self-loop and an arc per token, or to
    its blank). It depends on the distinct histories, never on the number or
    length of the transcripts: a bigram over every token has ``2 V + 1`` states
    and ``(2 V + 1)(V + 1)`` arcs, a unigram ``V + 1`` and ``(V + 1)**2``.

    **Smoothing.** Interpolated, over the ``V + 1`` outcomes (the tokens and the
    end of sentence), down to the uniform distribution ``1 / (V + 1)``, so tokens
    never seen still have probability. With ``c(h, w)`` the counts of ``w`` after
    ``h``, ``c(h)`` their sum, ``N(h)`` the number of distinct ``w`` seen after
    ``h`` and ``h'`` the history without its oldest item (the empty history's
    lower order is the uniform distribution):

    * ``"witten_bell"`` (default, no parameter):
      ``P(w | h) = (c(h, w) + N(h) P(w | h')) / (c(h) + N(h))``;
    * ``"absolute"`` (interpolated absolute discounting):
      ``P(w | h) = (max(c(h, w) - D, 0) + D N(h) P(w | h')) / c(h)`` with
      ``D = discount``.

    For every history the probabilities of the tokens and the end sum to 1.

    Symbol states carry ``tokens`` = their token id and blank states ``-1``, so
    the Viterbi segments of a denominator path are its tokens (a denominator has
    no target, hence no target positions to number them by).

    Parameters
    ----------
    transcripts : sequence of sequences of int
        The training transcripts: token ids in ``[0, num_tokens)``, never
        ``blank``. At least one (an empty transcript counts: it is a sentence
        that ends at once).
    num_tokens : int
        The number of emission classes, the blank included (>= 2). Ids that never
        occur in ``transcripts`` still get probability.
    blank : int, default 0
        The blank's class id (< ``num_tokens``).
    order : int, default 2
        The n-gram order: 1 (unigram), 2 (bigram, the usual choice for characters),
        3 (trigram), or more.
    smoothing : {"witten_bell", "absolute"}, default "witten_bell"
        See above.
    discount : float, default 0.5
        ``D`` of ``smoothing="absolute"``, in ``(0, 1]``.

    Returns
    -------
    lattice.Graph

    Raises
    ------
    TypeError
        If ``transcripts`` is not a sequence of integer sequences, or an option has
        the wrong type.
    ValueError
        For no transcripts, an id out of range or equal to ``blank``, ``num_tokens
        < 2``, ``blank >= num_tokens``, ``order < 1``, an unknown ``smoothing``, a
        ``discount`` outside ``(0, 1]``, or a graph of more than ``2**31 - 1``
        states or arcs. Each message names the argument.

    Examples
    --------
    A bigram over two tokens (ids 1 and 2, blank 0):

    >>> import numpy as np, lattice
    >>> g = lattice.build("ctc_denominator", [[1, 2], [2, 2, 1]], num_tokens=3)
    >>> g.num_states, g.num_arcs      # 2 V + 1 states, (2 V + 1)(V + 1) arcs
    (5, 15)
    >>> g.labels.tolist(), g.tokens.tolist()
    ([0, 1, 0, 2, 0], [-1, 1, -1, 2, -1])

    Every labelling is one path, weighted by the n-gram probability of what it
    collapses to, so over one frame the paths sum to ``P(</s> | <s>)`` (all blank)
    ``+ P(1 | <s>) P(</s> | 1) + P(2 | <s>) P(</s> | 2)``:

    >>> z = lattice.forward(np.zeros((1, 1, 3)), g)
    >>> round(float(np.exp(z[0])), 4)    # 0.15 + 0.4 * 0.4 + 0.45 * 0.3167
    0.4525

    From a blank state the arcs into the tokens and the final weight (the end of
    sentence) are the n-gram distribution of its history:

    >>> out = (g.src == 0) & (g.dst != 0)     # state 0: the blank state of <s>
    >>> np.exp(g.weight[out]).round(4).tolist(), round(float(np.exp(g.final[0])), 4)
    ([0.4, 0.45], 0.15)
    """
    num_tokens = int_value("num_tokens", num_tokens, 2)
    blank = int_value("blank", blank, 0)
    if blank >= num_tokens:
        raise ValueError(f"blank ({blank}) must be < num_tokens ({num_tokens})")
    order = int_value("order", order, 1, int32=False)
    if not isinstance(smoothing, str) or smoothing not in _SMOOTHING:
        raise ValueError(f"smoothing must be one of {', '.join(map(repr, _SMOOTHING))}, "
                         f"got {smoothing!r}")
    if not is_real(discount):
        raise TypeError(f"discount must be a real number, got {discount!r}")
    discount = float(discount)
    if not 0.0 < discount <= 1.0:
        raise ValueError(f"discount must lie in (0, 1], got {discount}")
    transcripts = _check_transcripts(transcripts, num_tokens, blank)
    lm = _NGram(transcripts, num_tokens, blank, order, smoothing, discount)
    symbols = [c for c in range(num_tokens) if c != blank]

    # states, breadth first from the history <s>: a blank state per history, a
    # token state per (history, token) reached (the token is the history's last
    # one, except for the empty history)
    labels, tokens, owner = [], [], []  # owner: the state's history

    def add(label, history):
        labels.append(label)
        tokens.append(-1 if label == blank else label)
        owner.append(history)
        return len(labels) - 1

    first = (_BOS,) if order > 1 else ()
    blank_of = {first: add(blank, first)}
    token_of = {}  # (history, token) -> state
    enter = {}  # history -> the token state entered with each of `symbols`
    queue = deque([first])
    while queue:
        h = queue.popleft()
        row = []
        for c in symbols:
            nxt = lm.next_state(h, c)
            if (nxt, c) not in token_of:
                token_of[nxt, c] = add(c, nxt)
            if nxt not in blank_of:
                blank_of[nxt] = add(blank, nxt)
                queue.append(nxt)
            row.append(token_of[nxt, c])
        enter[h] = np.array(row, dtype=np.int64)
    num_states = len(labels)
    num_arcs = num_states * (len(symbols) + 1)
    check_size(f"ctc_denominator(order={order}) over {num_tokens} classes and "
               f"{len(lm.counts)} seen histories", num_states, num_arcs)

    sym = np.array(symbols, dtype=np.int64)
    src, dst, weight = [], [], []
    final = np.empty(num_states)
    for s, (label, h) in enumerate(zip(labels, owner)):
        p = lm.probs(h)
        final[s] = np.log(p[blank])
        into = enter[h]
        logp = np.log(p[sym])
        if label == blank:  # self-loop, then every token
            keep = slice(None)
            loop_and_blank = [s]
        else:  # self-loop, its blank, every other token
            keep = sym != label
            loop_and_blank = [s, blank_of[h]]
        dst.append(np.concatenate([loop_and_blank, into[keep]]))
        src.append(np.full(dst[-1].size, s))
        weight.append(np.concatenate([np.zeros(len(loop_and_blank)), logp[keep]]))
    src, dst, weight = (np.concatenate(a) for a in (src, dst, weight))
    order_ = np.lexsort((dst, src))  # arcs by source, then destination
    start = np.full(num_states, -np.inf)
    start[blank_of[first]] = 0.0
    start[enter[first]] = np.log(lm.probs(first)[sym])
    return lattice.Graph(labels=np.array(labels), src=src[order_], dst=dst[order_],
                         weight=weight[order_], start=start, final=final,
                         tokens=np.array(tokens))

"""Samplers: token sequences from a step function, independent of the decoder.

A sampler drives `step_fn(tokens, state, index) -> (logits, state)` or
`-> (logits, state, outputs)`:

- `tokens` int32 `[N]`: the previous token of each row;
- `state`: any nest of tensors with rows first (`tf.nest`), e.g. an LSTM's
  `(h, c)`, a transformer's key/value cache;
- `index` int32 scalar: the position of the token being predicted (0 for
  the first word; a key/value cache writes the fed token's keys there);
- `logits` `[N, V]` for the next token;
- `outputs` (optional): a nest of per-step tensors with rows first (e.g.
  attention weights), recorded along the sequence for the rows returned.

Rows: a sampler works on `rows_per_input` rows per input (beams or
samples); input `i` owns rows `i * k .. i * k + k - 1`. The sampler
repeats the initial state itself; a step function that closes over
per-input constants (the attention memory, say) repeats them with
`repeat_rows(x, sampler.rows_per_input)`, once, outside the loop.

Every sampler is a `Sampler`: one `tf.while_loop` of core TF ops (so it
traces into an exported SavedModel) and a next-token hook, as in
keras-hub's `Sampler.get_next_token`:

- `Sampler.select` is the loop's hook: from the step's logits of all rows
  it picks each row's next token and, for beam search, the row it
  continues (its parent beam);
- `RowSampler` keeps every row on its own sequence and only asks
  `get_next_token(log_probs, index, seed)` for a token per row: greedy
  is the argmax, `RandomSampler` draws from the whole distribution,
  `TopKSampler` and `TopPSampler` from its top `k` tokens or its nucleus
  (`process_log_probs` truncates and renormalises).

Sequences start after `start_id`, end with `end_id` (included, unless cut
at `max_length`) and are padded with `pad_id`. Results are
`SampledSequences` with a leading `[batch, n]`: `n` sequences per input,
best first (beam search) or in draw order.
"""

import collections

import tensorflow as tf

from etenet_tf.text.vocabulary import END_ID, PAD_ID, START_ID

_NEG = -1e9  # "impossible" log-probability that stays finite

_FIRST = object()  # "create the output history from this step's outputs"

SampledSequences = collections.namedtuple("SampledSequences", ["ids", "scores", "outputs"])
SampledSequences.__doc__ = """What a sampler returns.

Fields:
    ids: int32 `[batch, n, max_length]`.
    scores: float32 `[batch, n]` (see each sampler for what they mean).
    outputs: the step function's outputs, each `[batch, n, max_length, ...]`
        (zero after a sequence's end), or None.
"""


def repeat_rows(x, rows_per_input):
    """Repeats each row (axis 0) of every tensor in a nest `rows_per_input` times."""
    return tf.nest.map_structure(lambda t: tf.repeat(t, rows_per_input, axis=0), x)


def _step(step_fn, tokens, state, index):
    result = step_fn(tokens, state, index)
    if len(result) == 2:
        return result[0], result[1], None
    return result


def _zero_buffers(outputs, leading, max_length):
    """Zero history buffers `leading + [max_length] + output dims`, one per
    output of the first step (which is run before the loop for that)."""
    if outputs is None:
        return ()  # nothing to record (a loop variable cannot be None)
    return tf.nest.map_structure(
        lambda o: tf.zeros(tf.concat([leading, [max_length], tf.shape(o)[1:]], 0), tf.float32),
        outputs)


def _empty(buffers):
    return isinstance(buffers, tuple) and not buffers


def _keep_shapes(new, old):
    # gathers lose static dims; keep each loop variable's entry shape
    return tf.nest.map_structure(lambda n, o: n if o is None else tf.ensure_shape(n, o.shape),
                                 new, old)


class Sampler:
    """Base class: the decoding loop, with the next-token rule as a hook.

    Subclasses give `rows_per_input` and `select`, and may override
    `initial_scores` and `finalize`. The loop runs the step function on
    all `batch * rows_per_input` rows at once, calls `select` with their
    logits, records the chosen tokens (and the step's outputs), and stops
    at `max_length` or when every row has ended.
    """

    #: True when `select` may move a row onto another row's sequence
    #: (beam search): the loop then reorders the states and histories.
    reorders_rows = False

    @property
    def rows_per_input(self):
        raise NotImplementedError

    def initial_scores(self, batch):
        """Running scores `[batch, k]` before the first token."""
        return tf.zeros([batch, self.rows_per_input])

    def select(self, logits, scores, finished, index, seed, pad_id):
        """The next-token hook of the loop.

        Args:
            logits: float32 `[batch, k, V]`, the step's logits.
            scores: float32 `[batch, k]`, the running scores.
            finished: bool `[batch, k]`: the row's sequence has ended (its
                next token must be `pad_id`, at no cost).
            index: int32 scalar, the position being generated.
            seed: int32 `[2]` or None.
            pad_id: the token of ended rows.

        Returns:
            `(parents, tokens, scores)`: int32 `[batch, k]` row each row
            continues (None: its own), int32 `[batch, k]` tokens, and the
            new running scores.
        """
        raise NotImplementedError

    def finalize(self, scores, lengths):
        """`(rows [batch, n], scores [batch, n])`: which rows to return, in
        order, and their scores (default: all, as they are)."""
        batch, k = tf.shape(scores)[0], self.rows_per_input
        return tf.tile(tf.range(k)[None, :], [batch, 1]), scores

    def __call__(self, step_fn, state, batch_size, *, max_length, seed=None, start_id=START_ID,
                 end_id=END_ID, pad_id=PAD_ID):
        """Returns `SampledSequences`.

        Args:
            step_fn: see the module doc.
            state: initial state of the `batch_size` inputs (repeated here).
            batch_size: inputs.
            max_length: most tokens per sequence.
            seed: int32 `[2]` seed of stateless draws (random rules): the
                same seed draws the same sequences.
        """
        if max_length < 1:
            raise ValueError("max_length must be >= 1")
        batch, k = batch_size, self.rows_per_input
        seed = None if seed is None else tf.cast(seed, tf.int32)
        state = repeat_rows(state, k)
        tokens = tf.fill([batch * k], tf.constant(start_id, tf.int32))
        reorders = self.reorders_rows

        def by_row(x, parents):
            return tf.gather(x, parents, batch_dims=1)

        def flat_by_row(x, parents):  # x: [batch * k, ...]
            shaped = tf.reshape(x, tf.concat([[batch, k], tf.shape(x)[1:]], 0))
            return tf.reshape(by_row(shaped, parents), tf.shape(x))

        def record(buffer, output, parents, live, column):
            output = tf.reshape(tf.cast(output, tf.float32),
                                tf.concat([[batch, k], tf.shape(output)[1:]], 0))
            if reorders:
                output, buffer = by_row(output, parents), by_row(buffer, parents)
            extra = tf.ones_like(tf.shape(output)[2:])
            where = tf.reshape(live, tf.concat([[batch, k], extra], 0))
            at = tf.reshape(tf.cast(column, tf.float32), tf.concat([[1, 1, max_length], extra], 0))
            return buffer + at * tf.expand_dims(tf.where(where, output, 0.0), 2)

        def advance(t, tokens, state, scores, finished, lengths, seqs, buffers):
            logits, state, outputs = _step(step_fn, tokens, state, t)
            if buffers is _FIRST:
                buffers = _zero_buffers(outputs, [batch, k], max_length)
            vocabulary = tf.shape(logits)[-1]
            logits = tf.reshape(tf.cast(logits, tf.float32), [batch, k, vocabulary])
            parents, token, scores = self.select(logits, scores, finished, t, seed, pad_id)
            if reorders:
                finished, lengths, seqs = (by_row(x, parents) for x in (finished, lengths, seqs))
            live = tf.logical_not(finished)
            column = tf.one_hot(t, max_length, dtype=tf.int32)
            seqs = seqs + column[None, None, :] * token[:, :, None]
            if not _empty(buffers):
                buffers = tf.nest.map_structure(
                    lambda b, o: record(b, o, parents, live, column), buffers, outputs)
            lengths = lengths + tf.cast(live, tf.int32)
            finished = tf.logical_or(finished, tf.equal(token, end_id))
            if reorders:
                state = tf.nest.map_structure(lambda x: flat_by_row(x, parents), state)
            return (t + 1, tf.reshape(token, [-1]), state, scores, finished, lengths, seqs,
                    buffers)

        def cond(t, tokens, state, scores, finished, lengths, seqs, buffers):
            return tf.logical_and(t < max_length, tf.logical_not(tf.reduce_all(finished)))

        def body(*loop_vars):
            return _keep_shapes(advance(*loop_vars), loop_vars)

        # the first step runs before the loop: its outputs shape the history
        first = advance(tf.constant(0), tokens, state, self.initial_scores(batch),
                        tf.zeros([batch, k], tf.bool), tf.zeros([batch, k], tf.int32),
                        tf.zeros([batch, k, max_length], tf.int32), _FIRST)
        first = first[:2] + (_keep_shapes(first[2], state),) + first[3:]
        _, _, _, scores, _, lengths, seqs, buffers = tf.while_loop(
            cond, body, first, maximum_iterations=max_length - 1)
        rows, scores = self.finalize(scores, lengths)
        return SampledSequences(
            tf.gather(seqs, rows, batch_dims=1),
            scores,
            None if _empty(buffers) else tf.nest.map_structure(
                lambda b: tf.gather(b, rows, batch_dims=1), buffers),
        )


class BeamSampler(Sampler):
    """Beam search (beam size 1: greedy with the same scores).

    Beams are ranked by summed log-probability during the search; finished
    beams continue with `<pad>` at no cost (they are frozen). The final
    choice divides by the GNMT length penalty `((5 + n) / 6) ** alpha`, `n`
    being the number of generated tokens including `<end>`.

    Args:
        beam_size: beams per input.
        length_penalty: `alpha` (0: none).
        num_returned: sequences returned per input (<= `beam_size`),
            best first by length-normalised score.
    """

    reorders_rows = True

    def __init__(self, beam_size=5, length_penalty=0.6, num_returned=1):
        if beam_size < 1 or not 1 <= num_returned <= beam_size:
            raise ValueError("need beam_size >= 1 and 1 <= num_returned <= beam_size")
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.num_returned = num_returned

    @property
    def rows_per_input(self):
        return self.beam_size

    def initial_scores(self, batch):
        # one live beam: the others would repeat it
        return tf.tile(tf.constant([[0.0] + [_NEG] * (self.beam_size - 1)]), [batch, 1])

    def select(self, logits, scores, finished, index, seed, pad_id):
        batch, k, vocabulary = tf.shape(logits)[0], self.beam_size, tf.shape(logits)[2]
        # (the softmax of rank-2 rows: a rank-3 one may round differently)
        step_lp = tf.reshape(tf.nn.log_softmax(tf.reshape(logits, [-1, vocabulary])),
                             [batch, k, vocabulary])
        pad_only = tf.one_hot(pad_id, vocabulary, on_value=0.0, off_value=_NEG)
        step_lp = tf.where(finished[:, :, None], pad_only[None, None, :], step_lp)
        top, flat = tf.math.top_k(
            tf.reshape(scores[:, :, None] + step_lp, [batch, k * vocabulary]), k)
        return flat // vocabulary, flat % vocabulary, top

    def finalize(self, scores, lengths):
        """Scores are length-normalised log-probabilities."""
        penalty = tf.pow((5.0 + tf.cast(tf.maximum(lengths, 1), tf.float32)) / 6.0,
                         self.length_penalty)
        normalized = scores / penalty
        if self.num_returned == 1:
            best = tf.argmax(normalized, axis=1, output_type=tf.int32)[:, None]
        else:
            best = tf.math.top_k(normalized, self.num_returned).indices
        return best, tf.gather(normalized, best, batch_dims=1)


class GreedySampler(BeamSampler):
    """The most likely token at every step (a beam of one)."""

    def __init__(self, length_penalty=0.6):
        super().__init__(beam_size=1, length_penalty=length_penalty)


class RowSampler(Sampler):
    """A sampler whose rows each follow their own sequence: the rule only
    picks each row's next token (`get_next_token`, the keras-hub hook).

    Scores are the summed log-probabilities of the chosen tokens under the
    distribution they were chosen from (`process_log_probs` of the tempered
    log-probabilities), `<end>` included (not differentiable: compute
    training log-probabilities with a teacher-forced pass).

    Args:
        num_samples: sequences per input.
        temperature: logits are divided by it (1: the model's distribution).
        seed: default int32 `[2]` seed when a call gives none.
    """

    def __init__(self, num_samples=5, temperature=1.0, seed=None):
        if num_samples < 1 or temperature <= 0:
            raise ValueError("need num_samples >= 1 and temperature > 0")
        self.num_samples = num_samples
        self.temperature = temperature
        self.seed = seed

    @property
    def rows_per_input(self):
        return self.num_samples

    def process_log_probs(self, log_probs):
        """Log-probabilities `[rows, V]` the rule draws from (default: as given)."""
        return log_probs

    def get_next_token(self, log_probs, index, seed):
        """Next token `[rows]` from log-probabilities `[rows, V]`."""
        raise NotImplementedError

    def select(self, logits, scores, finished, index, seed, pad_id):
        if seed is None:
            if self.seed is None:
                raise ValueError(f"{type(self).__name__} needs a seed")
            seed = tf.constant(self.seed, tf.int32)
        shape = tf.shape(logits)
        flat = tf.reshape(logits, [-1, shape[2]])
        if self.temperature != 1.0:
            flat = flat / self.temperature
        log_p = self.process_log_probs(tf.nn.log_softmax(flat))
        drawn = tf.reshape(self.get_next_token(log_p, index, seed), shape[:2])
        token = tf.where(finished, pad_id, drawn)
        picked = tf.reshape(tf.gather(log_p, tf.reshape(token, [-1]), batch_dims=1), shape[:2])
        return None, token, scores + tf.where(finished, 0.0, picked)


class RandomSampler(RowSampler):
    """Sequences drawn from the model's (tempered) distribution
    (multinomial sampling), e.g. the K captions per clip of self-critical
    training. Sequences come back in draw order."""

    def get_next_token(self, log_probs, index, seed):
        return tf.random.stateless_categorical(log_probs, 1, seed + tf.stack([0, index]),
                                               dtype=tf.int32)[:, 0]


def _keep_at_least(log_probs, threshold):
    """Renormalised log-probabilities of the tokens at or above a per-row
    `threshold` `[rows]`; the others impossible."""
    kept = tf.where(log_probs >= threshold[:, None], log_probs, _NEG)
    return tf.nn.log_softmax(kept)


class TopKSampler(RandomSampler):
    """Draws from the `k` most likely tokens (renormalised).

    Args:
        k: tokens kept per step (1: greedy).
        num_samples, temperature, seed: see `RowSampler`.
    """

    def __init__(self, k=5, num_samples=5, temperature=1.0, seed=None):
        if k < 1:
            raise ValueError("need k >= 1")
        super().__init__(num_samples, temperature, seed)
        self.k = k

    def process_log_probs(self, log_probs):
        k = tf.minimum(self.k, tf.shape(log_probs)[-1])
        return _keep_at_least(log_probs, tf.math.top_k(log_probs, k).values[:, -1])


class TopPSampler(RandomSampler):
    """Nucleus sampling (Holtzman et al. 2020): draws from the fewest most
    likely tokens whose probabilities sum to at least `p` (renormalised).

    Args:
        p: probability mass kept, in (0, 1].
        num_samples, temperature, seed: see `RowSampler`.
    """

    def __init__(self, p=0.9, num_samples=5, temperature=1.0, seed=None):
        if not 0.0 < p <= 1.0:
            raise ValueError("need 0 < p <= 1")
        super().__init__(num_samples, temperature, seed)
        self.p = p

    def process_log_probs(self, log_probs):
        ordered = tf.sort(log_probs, axis=-1, direction="DESCENDING")
        before = tf.cumsum(tf.exp(ordered), axis=-1, exclusive=True)  # mass of better tokens
        kept = tf.maximum(tf.reduce_sum(tf.cast(before < self.p, tf.int32), axis=-1), 1)
        return _keep_at_least(log_probs, tf.gather(ordered, kept - 1, batch_dims=1))


# The rules that draw captions (rather than search for the likeliest), by
# the name `--sampling`, `--scst_sampling` and the demo use: a new rule is
# its `RowSampler` subclass plus one entry here.
DRAWN_RULES = {
    "random": lambda top_k, top_p, **common: RandomSampler(**common),
    "top_k": lambda top_k, top_p, **common: TopKSampler(top_k, **common),
    "top_p": lambda top_k, top_p, **common: TopPSampler(top_p, **common),
}


def drawn_sampler(rule, num_samples, temperature=1.0, top_k=10, top_p=0.9, seed=None):
    """The sampler of a drawing rule (`DRAWN_RULES`): `num_samples` sequences
    per input at `temperature`; `top_k` and `top_p` apply to their rules
    only; `seed` is the default `[2]` seed (see `RowSampler`)."""
    if rule not in DRAWN_RULES:
        raise ValueError(f"unknown sampling rule {rule!r}; choose from "
                         f"{', '.join(DRAWN_RULES)}")
    return DRAWN_RULES[rule](top_k=top_k, top_p=top_p, num_samples=num_samples,
                             temperature=temperature, seed=seed)

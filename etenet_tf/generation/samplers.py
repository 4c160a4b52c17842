"""Samplers: token sequences from a step function, independent of the decoder.

A sampler drives `step_fn(tokens, state) -> (logits, state)` or
`-> (logits, state, outputs)`:

- `tokens` int32 `[N]`: the previous token of each row;
- `state`: any nest of tensors with rows first (`tf.nest`), e.g. an LSTM's
  `(h, c)`, a transformer's key/value cache;
- `logits` `[N, V]` for the next token;
- `outputs` (optional): a nest of per-step tensors with rows first (e.g.
  attention weights), recorded along the sequence for the rows returned.

Rows: a sampler works on `rows_per_input` rows per input (beams or
samples); input `i` owns rows `i * k .. i * k + k - 1`. The sampler
repeats the initial state itself; a step function that closes over
per-input constants (the attention memory, say) repeats them with
`repeat_rows(x, sampler.rows_per_input)`, once, outside the loop.

Each sampler runs as one `tf.while_loop` of core TF ops, so it traces into
an exported SavedModel. Sequences start after `start_id`, end with
`end_id` (included, unless cut at `max_length`) and are padded with
`pad_id`. Results are `SampledSequences` with a leading `[batch, n]`:
`n` sequences per input, best first.
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


def _step(step_fn, tokens, state):
    result = step_fn(tokens, state)
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


class BeamSampler:
    """Beam search (beam size 1: greedy with the same scores).

    Beams are ranked by summed log-probability during the search; finished
    beams continue with `<pad>` at no cost. The final choice divides by
    the GNMT length penalty `((5 + n) / 6) ** alpha`, `n` being the number
    of generated tokens including `<end>`.

    Args:
        beam_size: beams per input.
        length_penalty: `alpha` (0: none).
        num_returned: sequences returned per input (<= `beam_size`),
            best first by length-normalised score.
    """

    def __init__(self, beam_size=5, length_penalty=0.6, num_returned=1):
        if beam_size < 1 or not 1 <= num_returned <= beam_size:
            raise ValueError("need beam_size >= 1 and 1 <= num_returned <= beam_size")
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.num_returned = num_returned

    @property
    def rows_per_input(self):
        return self.beam_size

    def __call__(self, step_fn, state, batch_size, *, max_length, start_id=START_ID,
                 end_id=END_ID, pad_id=PAD_ID):
        """Returns `SampledSequences`; scores are length-normalised
        log-probabilities."""
        if max_length < 1:
            raise ValueError("max_length must be >= 1")
        batch, k = batch_size, self.beam_size
        state = repeat_rows(state, k)
        tokens = tf.fill([batch * k], tf.constant(start_id, tf.int32))
        log_probs = tf.tile(tf.constant([[0.0] + [_NEG] * (k - 1)]), [batch, 1])
        finished = tf.zeros([batch, k], tf.bool)
        lengths = tf.zeros([batch, k], tf.int32)
        seqs = tf.zeros([batch, k, max_length], tf.int32)

        def by_beam(x, beam):
            return tf.gather(x, beam, batch_dims=1)

        def flat_by_beam(x, beam):  # x: [batch * k, ...]
            shaped = tf.reshape(x, tf.concat([[batch, k], tf.shape(x)[1:]], 0))
            return tf.reshape(by_beam(shaped, beam), tf.shape(x))

        def record(buffer, output, beam, live, column):
            output = by_beam(tf.reshape(tf.cast(output, tf.float32),
                                        tf.concat([[batch, k], tf.shape(output)[1:]], 0)), beam)
            extra = tf.ones_like(tf.shape(output)[2:])
            where = tf.reshape(live, tf.concat([[batch, k], extra], 0))
            at = tf.reshape(tf.cast(column, tf.float32), tf.concat([[1, 1, max_length], extra], 0))
            return by_beam(buffer, beam) + at * tf.expand_dims(tf.where(where, output, 0.0), 2)

        def advance(t, tokens, state, log_probs, finished, lengths, seqs, buffers):
            logits, state, outputs = _step(step_fn, tokens, state)
            if buffers is _FIRST:
                buffers = _zero_buffers(outputs, [batch, k], max_length)
            vocabulary = tf.shape(logits)[-1]
            step_lp = tf.reshape(tf.nn.log_softmax(tf.cast(logits, tf.float32)),
                                 [batch, k, vocabulary])
            pad_only = tf.one_hot(pad_id, vocabulary, on_value=0.0, off_value=_NEG)
            step_lp = tf.where(finished[:, :, None], pad_only[None, None, :], step_lp)
            top, index = tf.math.top_k(
                tf.reshape(log_probs[:, :, None] + step_lp, [batch, k * vocabulary]), k)
            beam, token = index // vocabulary, index % vocabulary
            was_finished = by_beam(finished, beam)
            live = tf.logical_not(was_finished)
            column = tf.one_hot(t, max_length, dtype=tf.int32)
            seqs = by_beam(seqs, beam) + column[None, None, :] * token[:, :, None]
            if not _empty(buffers):
                buffers = tf.nest.map_structure(
                    lambda b, o: record(b, o, beam, live, column), buffers, outputs)
            lengths = by_beam(lengths, beam) + tf.cast(live, tf.int32)
            finished = tf.logical_or(was_finished, tf.equal(token, end_id))
            state = tf.nest.map_structure(lambda x: flat_by_beam(x, beam), state)
            return (t + 1, tf.reshape(token, [-1]), state, top, finished, lengths, seqs, buffers)

        def cond(t, tokens, state, log_probs, finished, lengths, seqs, buffers):
            return tf.logical_and(t < max_length, tf.logical_not(tf.reduce_all(finished)))

        def body(*loop_vars):
            return _keep_shapes(advance(*loop_vars), loop_vars)

        # the first step runs before the loop: its outputs shape the history
        first = advance(tf.constant(0), tokens, state, log_probs, finished, lengths, seqs, _FIRST)
        first = first[:2] + (_keep_shapes(first[2], state),) + first[3:]
        _, _, _, log_probs, _, lengths, seqs, buffers = tf.while_loop(
            cond, body, first, maximum_iterations=max_length - 1)
        penalty = tf.pow((5.0 + tf.cast(tf.maximum(lengths, 1), tf.float32)) / 6.0,
                         self.length_penalty)
        normalized = log_probs / penalty
        if self.num_returned == 1:
            best = tf.argmax(normalized, axis=1, output_type=tf.int32)[:, None]
        else:
            best = tf.math.top_k(normalized, self.num_returned).indices
        return SampledSequences(
            tf.gather(seqs, best, batch_dims=1),
            tf.gather(normalized, best, batch_dims=1),
            None if _empty(buffers) else tf.nest.map_structure(
                lambda b: tf.gather(b, best, batch_dims=1), buffers),
        )


class GreedySampler(BeamSampler):
    """The most likely token at every step (a beam of one)."""

    def __init__(self, length_penalty=0.6):
        super().__init__(beam_size=1, length_penalty=length_penalty)


class RandomSampler:
    """Sequences drawn from the model's distribution (multinomial sampling),
    e.g. the K captions per clip of self-critical training.

    Args:
        num_samples: sequences drawn per input.
        temperature: logits are divided by it (1: the model's distribution).

    Scores are the summed log-probabilities of the drawn tokens under the
    tempered distribution, `<end>` included (not differentiable: compute
    training log-probabilities with a teacher-forced pass).
    """

    def __init__(self, num_samples=5, temperature=1.0):
        if num_samples < 1 or temperature <= 0:
            raise ValueError("need num_samples >= 1 and temperature > 0")
        self.num_samples = num_samples
        self.temperature = temperature

    @property
    def rows_per_input(self):
        return self.num_samples

    def __call__(self, step_fn, state, batch_size, *, max_length, seed, start_id=START_ID,
                 end_id=END_ID, pad_id=PAD_ID):
        """Returns `SampledSequences` with `n = num_samples` (in draw order).

        Args:
            seed: int32 `[2]` seed of the stateless draws: the same seed
                draws the same sequences (a resumed run repeats its samples).
        """
        batch, k = batch_size, self.num_samples
        rows = batch * k
        state = repeat_rows(state, k)
        seed = tf.cast(seed, tf.int32)

        def record(buffer, output, finished, column):
            output = tf.cast(output, tf.float32)
            extra = tf.ones_like(tf.shape(output)[1:])
            where = tf.reshape(tf.logical_not(finished), tf.concat([[rows], extra], 0))
            at = tf.reshape(tf.cast(column, tf.float32), tf.concat([[1, max_length], extra], 0))
            return buffer + at * tf.expand_dims(tf.where(where, output, 0.0), 1)

        def advance(t, tokens, state, finished, scores, seqs, buffers):
            logits, state, outputs = _step(step_fn, tokens, state)
            if buffers is _FIRST:
                buffers = _zero_buffers(outputs, [rows], max_length)
            log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32) / self.temperature)
            drawn = tf.random.stateless_categorical(log_p, 1, seed + tf.stack([0, t]),
                                                    dtype=tf.int32)[:, 0]
            token = tf.where(finished, pad_id, drawn)
            scores = scores + tf.where(finished, 0.0, tf.gather(log_p, token, batch_dims=1))
            column = tf.one_hot(t, max_length, dtype=tf.int32)
            seqs = seqs + column[None, :] * token[:, None]
            if not _empty(buffers):
                buffers = tf.nest.map_structure(
                    lambda b, o: record(b, o, finished, column), buffers, outputs)
            finished = tf.logical_or(finished, tf.equal(token, end_id))
            return (t + 1, token, state, finished, scores, seqs, buffers)

        def cond(t, tokens, state, finished, scores, seqs, buffers):
            return tf.logical_and(t < max_length, tf.logical_not(tf.reduce_all(finished)))

        def body(*loop_vars):
            return _keep_shapes(advance(*loop_vars), loop_vars)

        tokens = tf.fill([rows], tf.constant(start_id, tf.int32))
        first = advance(tf.constant(0), tokens, state, tf.zeros([rows], tf.bool),
                        tf.zeros([rows]), tf.zeros([rows, max_length], tf.int32), _FIRST)
        first = first[:2] + (_keep_shapes(first[2], state),) + first[3:]
        _, _, _, _, scores, seqs, buffers = tf.while_loop(
            cond, body, first, maximum_iterations=max_length - 1)
        return SampledSequences(
            tf.reshape(seqs, [batch, k, max_length]),
            tf.reshape(scores, [batch, k]),
            None if _empty(buffers) else tf.nest.map_structure(
                lambda b: tf.reshape(b, tf.concat([[batch, k], tf.shape(b)[1:]], 0)), buffers),
        )

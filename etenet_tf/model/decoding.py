"""Batched, in-graph beam search (greedy = beam size 1).

Runs as one `tf.while_loop`, so it traces into the exported SavedModel with
core TF ops only. Finished beams continue with `<pad>` at no cost; beams are
ranked by summed log-probability during the search and the final choice
divides by the GNMT length penalty `((5 + n) / 6) ** alpha`, `n` being the
number of generated tokens including `<end>`.
"""

import tensorflow as tf

from etenet_tf.text.vocabulary import END_ID, PAD_ID, START_ID

_NEG = -1e9  # "impossible" log-probability that stays finite


def beam_search(decoder, features, *, beam_size=5, max_length=20, length_penalty=0.6):
    """Generates one caption per video.

    Args:
        decoder: a `SoftAttentionLSTM`.
        features: frame features `[batch, frames, dim]`.
        beam_size: beams per video (1 = greedy).
        max_length: most tokens generated, `<end>` included.
        length_penalty: `alpha` of the length penalty (0 = none).

    Returns:
        `(ids [batch, max_length] int32, scores [batch] float32,
        attention [batch, max_length, frames] float32)`. `ids` end with
        `<end>` (unless cut at `max_length`) and are padded with `<pad>`;
        `scores` are length-normalised log-probabilities.
    """
    if beam_size < 1 or max_length < 1:
        raise ValueError("beam_size and max_length must be >= 1")
    features = tf.convert_to_tensor(features)
    batch = tf.shape(features)[0]
    frames = tf.shape(features)[1]
    k, v = beam_size, decoder.vocabulary_size
    memory, (h, c) = decoder.initial_state(tf.repeat(features, k, axis=0))

    log_probs = tf.tile(tf.constant([[0.0] + [_NEG] * (k - 1)]), [batch, 1])
    tokens = tf.fill([batch * k], START_ID)
    finished = tf.zeros([batch, k], tf.bool)
    lengths = tf.zeros([batch, k], tf.int32)
    seqs = tf.zeros([batch, k, max_length], tf.int32)
    attention = tf.zeros([batch, k, max_length, frames], tf.float32)
    pad_only = tf.one_hot(PAD_ID, v, on_value=0.0, off_value=_NEG)

    def by_beam(x, beam):
        return tf.gather(x, beam, batch_dims=1)

    def flat_by_beam(x, beam):  # x: [batch * k, ...]
        shaped = tf.reshape(x, tf.concat([[batch, k], tf.shape(x)[1:]], 0))
        return tf.reshape(by_beam(shaped, beam), tf.shape(x))

    def cond(t, tokens, h, c, log_probs, finished, lengths, seqs, attention):
        return tf.logical_and(t < max_length, tf.logical_not(tf.reduce_all(finished)))

    def body(t, tokens, h, c, log_probs, finished, lengths, seqs, attention):
        tokens_in, h_in, c_in, finished_in = tokens, h, c, finished
        lengths_in, seqs_in, attention_in = lengths, seqs, attention
        logits, (h, c), alpha = decoder.step(tokens, (h, c), memory)
        step_lp = tf.reshape(tf.nn.log_softmax(tf.cast(logits, tf.float32)), [batch, k, v])
        step_lp = tf.where(finished[:, :, None], pad_only[None, None, :], step_lp)
        top, index = tf.math.top_k(tf.reshape(log_probs[:, :, None] + step_lp, [batch, k * v]), k)
        beam, token = index // v, index % v
        was_finished = by_beam(finished, beam)
        live = tf.logical_not(was_finished)
        column = tf.one_hot(t, max_length, dtype=tf.int32)
        seqs = by_beam(seqs, beam) + column[None, None, :] * token[:, :, None]
        alpha = by_beam(tf.reshape(tf.cast(alpha, tf.float32), [batch, k, frames]), beam)
        attention = by_beam(attention, beam) + (
            tf.cast(column, tf.float32)[None, None, :, None]
            * tf.where(live[:, :, None], alpha, 0.0)[:, :, None, :]
        )
        lengths = by_beam(lengths, beam) + tf.cast(live, tf.int32)
        finished = tf.logical_or(was_finished, tf.equal(token, END_ID))
        new = (t + 1, tf.reshape(token, [-1]), flat_by_beam(h, beam), flat_by_beam(c, beam),
               top, finished, lengths, seqs, attention)
        # gathers lose static dims; keep each loop variable's entry shape
        old = (t, tokens_in, h_in, c_in, log_probs, finished_in, lengths_in, seqs_in, attention_in)
        return tuple(tf.ensure_shape(n, o.shape) for n, o in zip(new, old))

    _, _, _, _, log_probs, _, lengths, seqs, attention = tf.while_loop(
        cond, body,
        (tf.constant(0), tokens, h, c, log_probs, finished, lengths, seqs, attention),
        maximum_iterations=max_length,
    )
    penalty = tf.pow((5.0 + tf.cast(tf.maximum(lengths, 1), tf.float32)) / 6.0, length_penalty)
    normalized = log_probs / penalty
    best = tf.argmax(normalized, axis=1, output_type=tf.int32)
    return (
        tf.gather(seqs, best, batch_dims=1),
        tf.gather(normalized, best, batch_dims=1),
        tf.gather(attention, best, batch_dims=1),
    )

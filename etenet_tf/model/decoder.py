"""The caption decoder interface every decoder of `DECODERS` implements.

A decoder reads the memory tokens `[B, N, D]` (from the encoder, or the
spatio-temporal context layer) and predicts next-word logits. It runs two
ways that must agree:

- teacher-forced: `call(memory, tokens, padding_mask=...)` over a whole
  token sequence, for training and for the log-probabilities of scst;
- step by step: `initial_state(memory, max_length)` once, then
  `step(tokens, state, index, constants)` per word, for the samplers.

The state is split in two. `constants` are per-input tensors computed once
from the memory (attention keys, cross-attention keys and values): the
captioner repeats them to the sampler's rows once and passes them to every
step; beam search never reorders them, since every beam of a clip has the
same. `state` is what changes from word to word (an LSTM's `(h, c)`, a
key/value cache of the words so far): a nest with rows first that the
sampler repeats and, in beam search, reorders with the beams.
"""

import keras


class CaptionDecoder(keras.layers.Layer):
    """Base class of the caption decoders.

    Subclasses build their sublayers in `build(memory_shape, tokens_shape)`
    and implement `call`, `initial_state` and `step`; `get_config` chains
    to this one's.

    Args:
        vocabulary_size: number of output tokens.
    """

    def __init__(self, vocabulary_size, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size

    def call(self, memory, tokens, padding_mask=None, training=False, return_attention=False):
        """Teacher-forced logits.

        Args:
            memory: float `[B, N, D]` memory tokens.
            tokens: int `[B, L]` input tokens (`<start>` then the caption).
            padding_mask: bool `[B, L]`, False at padding (None: no padding).
                Padding only follows `<end>` and decoders are causal, so it
                never changes the logits of real words.
            training: dropout on.
            return_attention: also return the attention weights over the
                memory `[B, L, N]`.

        Returns:
            logits `[B, L, V]` (and the attention).
        """
        raise NotImplementedError

    def initial_state(self, memory, max_length):
        """`(constants, state)` for `step` (see the module doc).

        Args:
            memory: `[B, N, D]`.
            max_length: most steps that will be run (a cache's size).
        """
        raise NotImplementedError

    def step(self, tokens, state, index, constants, training=False):
        """One decoding step.

        Args:
            tokens: int `[R]`, the previous word of each row.
            state: the state of the rows (from `initial_state` or the
                previous step).
            index: int32 scalar, the position of `tokens` in the sequence
                (0 for `<start>`).
            constants: from `initial_state`, repeated to the rows.

        Returns:
            `(logits [R, V], new_state, attention [R, N])`.
        """
        raise NotImplementedError

    def compute_output_shape(self, memory_shape, tokens_shape, padding_mask_shape=None):
        return tuple(tokens_shape) + (self.vocabulary_size,)

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary_size": self.vocabulary_size})
        return config

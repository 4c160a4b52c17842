"""EtENet: per-frame CNN encoder + (optional) spatio-temporal context +
a caption decoder (the paper's soft-attention LSTM, or another of
`DECODERS`), composed into one Keras model."""

import keras
import tensorflow as tf
from keras import ops

# its parts, imported so that Keras knows their registered names when it
# rebuilds a captioner (`from_config`, `keras.saving.load_model`)
from etenet_tf.model import decoders as _decoders  # noqa: F401
from etenet_tf.model import encoder as _encoder  # noqa: F401
from etenet_tf.model import video_context as _video_context  # noqa: F401
from etenet_tf.text import vocabulary as vocab_lib
from etenet_tf.text.vocabulary import PAD_ID


@keras.saving.register_keras_serializable(package="etenet_tf")
class EtENetCaptioner(keras.Model):
    """End-to-end video captioner (Olivastri et al., arXiv 1904.02628).

    Inputs are a dict with `tokens` (teacher-forcing input ids `[B, L]`)
    and either `frames` (`[B, T, S, S, 3]` RGB in [0, 255]) or `features`
    (`[B, T, G, G, C]`, the encoder's output, e.g. from the pretrain
    cache). The output is next-word logits `[B, L, V]`, so `fit` with
    `CaptionLoss` trains it by teacher forcing.

    The parts are given, not named, the way keras-hub tasks take their
    backbone: `get_config` serialises each part, so a saved `.keras` file
    (vocabulary included) captions videos on its own. See
    `etenet_tf.model.config.build_captioner` for building one from options.

    Args:
        encoder: a `FrameEncoder` (frames -> `[B, T, G, G, C]` grids).
        decoder: a `CaptionDecoder` over memory tokens (e.g. the paper's
            `SoftAttentionLSTM`).
        vocabulary: list of tokens, starting with the special tokens.
        context: None (the paper: one token per frame, the encoder's
            pooled vector) or a `SpatioTemporalContext`.
        num_frames: frames per clip the model was trained on, or None if
            any number works (the paper's order-free attention). Inputs
            with another frame count are resampled in the serving graph.
    """

    def __init__(self, encoder, decoder, vocabulary, context=None, num_frames=None, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = list(vocab_lib.Vocabulary(vocabulary).tokens)
        if decoder.vocabulary_size != len(self.vocabulary):
            raise ValueError(f"the decoder has {decoder.vocabulary_size} outputs but the "
                             f"vocabulary {len(self.vocabulary)} tokens")
        if context is not None and num_frames != context.num_frames:
            raise ValueError(f"num_frames={num_frames} differs from the context layer's "
                             f"{context.num_frames}")
        self.encoder = encoder
        self.decoder = decoder
        self.context = context
        self.num_frames = num_frames
        self.build()

    def build(self, input_shape=None):
        # parts deserialised from a saved config may arrive built
        size, grid = self.encoder.image_size, self.encoder.spatial_grid
        if not self.encoder.built:
            self.encoder.build((None, self.num_frames, size, size, 3))
        features = (None, self.num_frames, grid, grid, self.encoder.output_dim)
        memory = (None, None, self.encoder.output_dim)
        if self.context is not None:
            if not self.context.built:
                self.context.build(features)
            memory = self.context.compute_output_shape(features)
        if not self.decoder.built:
            self.decoder.build(memory, (None, None))
        self.built = True

    @property
    def image_size(self):
        return self.encoder.image_size

    @property
    def feature_shape(self):
        """Shape of one clip's encoder output `(T or None, G, G, C)`."""
        grid = self.encoder.spatial_grid
        return (self.num_frames, grid, grid, self.encoder.output_dim)

    def memory(self, features):
        """Attention memory `[B, N, D]` from encoder features `[B, T, G, G, C]`."""
        if self.context is not None:
            return self.context(features)
        # the paper: one token per frame and cell, the encoder's own features
        channels = self.encoder.output_dim
        return ops.reshape(features, (ops.shape(features)[0], -1, channels))

    def call(self, inputs, training=False):
        if "features" in inputs:
            features = inputs["features"]
        else:
            features = self.encoder(inputs["frames"], training=training)
        return self.decode(self.memory(features), inputs["tokens"], training=training)

    def decode(self, memory, tokens, training=False, return_attention=False):
        """Teacher-forced next-word logits `[B, L, V]` from the memory
        `[B, N, D]` and input tokens `[B, L]` (`<pad>` after the caption)."""
        return self.decoder(memory, tokens, padding_mask=ops.not_equal(tokens, PAD_ID),
                            training=training, return_attention=return_attention)

    def encode(self, frames):
        """Frame features `[B, T, G, G, C]` (inference mode)."""
        return self.encoder(frames, training=False)

    def start_decoding(self, features, rows_per_input=1, max_length=None):
        """The decoder as a sampler's step function (see
        `etenet_tf.generation.samplers`).

        Args:
            features: encoder features `[B, T, G, G, C]`.
            rows_per_input: rows the sampler runs per clip (beams or
                samples); the decoder's per-clip constants (attention keys,
                cross-attention keys and values) are repeated to match, once.
            max_length: most steps the sampler runs (a key/value cache's
                size; None only for decoders without one).

        Returns:
            `(step_fn, state)`: `step_fn(tokens [N], state, index) -> (logits
            [N, V], state, attention [N, T*G*G])` and the decoder's initial
            state of the `B` clips (the sampler repeats it).
        """
        constants, state = self.decoder.initial_state(self.memory(features), max_length)
        constants = tf.nest.map_structure(lambda c: ops.repeat(c, rows_per_input, axis=0),
                                          constants)

        def step_fn(tokens, state, index):
            return self.decoder.step(tokens, state, index, constants)

        return step_fn, state

    def detokenize(self, ids):
        """ids `[B, L]` -> caption strings `[B]` (core TF ops)."""
        return vocab_lib.ids_to_text(ids, tf.constant(self.vocabulary))

    def get_build_config(self):
        # everything build() needs is in the config
        return {"from_config": True}

    def build_from_config(self, config):
        self.build()

    def get_config(self):
        config = super().get_config()
        config.update({
            "encoder": keras.layers.serialize(self.encoder),
            "decoder": keras.layers.serialize(self.decoder),
            "context": None if self.context is None else keras.layers.serialize(self.context),
            "vocabulary": self.vocabulary,
            "num_frames": self.num_frames,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("encoder", "decoder", "context"):
            if isinstance(config.get(name), dict):
                config[name] = keras.layers.deserialize(config[name])
        return cls(**config)

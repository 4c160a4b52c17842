"""EtENet: per-frame CNN encoder + soft-attention LSTM decoder."""

import keras
import tensorflow as tf

from etenet_tf.model import decoding
from etenet_tf.model.attention_lstm import SoftAttentionLSTM
from etenet_tf.model.encoder import FrameEncoder
from etenet_tf.text import vocabulary as vocab_lib


@keras.saving.register_keras_serializable(package="etenet_tf")
class EtENetCaptioner(keras.Model):
    """End-to-end video captioner (Olivastri et al., arXiv 1904.02628).

    Inputs are a dict with `tokens` (teacher-forcing input ids `[B, L]`)
    and either `frames` (`[B, T, S, S, 3]` RGB in [0, 255]) or `features`
    (`[B, T, D]`, the encoder's output, e.g. from the pretrain cache). The
    output is next-word logits `[B, L, V]`, so `fit` with `CaptionLoss`
    trains it by teacher forcing. The vocabulary is part of the config, so
    a saved `.keras` file captions videos on its own.

    Args:
        vocabulary: list of tokens, starting with the special tokens.
        encoder_name: a key of `etenet_tf.model.encoder.ENCODERS`.
        image_size: side of the input frames.
        embedding_dim: word embedding size.
        hidden_dim: LSTM state size.
        attention_dim: attention MLP size.
        dropout: decoder dropout rate.
        encoder_weights: `"imagenet"`, `"none"`/None or a weights file, for
            a newly built model (not stored: saved models carry weights).
    """

    def __init__(self, vocabulary, encoder_name="inception_v3", image_size=299,
                 embedding_dim=256, hidden_dim=512, attention_dim=256, dropout=0.5,
                 encoder_weights=None, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = list(vocab_lib.Vocabulary(vocabulary).tokens)
        self.encoder_name = encoder_name
        self.image_size = image_size
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.attention_dim = attention_dim
        self.dropout = dropout
        self.encoder_weights = encoder_weights
        self.encoder = FrameEncoder(
            encoder_name, image_size, encoder_weights, name="frame_encoder"
        )
        self.decoder = SoftAttentionLSTM(
            len(self.vocabulary), embedding_dim, hidden_dim, attention_dim, dropout,
            name="attention_lstm",
        )
        self.build()

    def build(self, input_shape=None):
        self.encoder.build((None, None, self.image_size, self.image_size, 3))
        self.decoder.build((None, None, self.encoder.output_dim), (None, None))
        self.built = True

    @property
    def feature_dim(self):
        return self.encoder.output_dim

    def call(self, inputs, training=False):
        if "features" in inputs:
            features = inputs["features"]
        else:
            features = self.encoder(inputs["frames"], training=training)
        return self.decoder(features, inputs["tokens"], training=training)

    def encode(self, frames):
        """Frame features `[B, T, D]` (inference mode)."""
        return self.encoder(frames, training=False)

    def generate(self, features, beam_size=5, max_length=20, length_penalty=0.6):
        """Token ids, scores and attention from features; see `decoding`."""
        return decoding.beam_search(
            self.decoder, features, beam_size=beam_size, max_length=max_length,
            length_penalty=length_penalty,
        )

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
            "vocabulary": self.vocabulary,
            "encoder_name": self.encoder_name,
            "image_size": self.image_size,
            "embedding_dim": self.embedding_dim,
            "hidden_dim": self.hidden_dim,
            "attention_dim": self.attention_dim,
            "dropout": self.dropout,
            # weights are saved with the model; never re-read a file on load
            "encoder_weights": None,
        })
        return config

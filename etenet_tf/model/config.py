"""The captioner's options as one typed config, and the model built from it.

`ModelConfig` is what `<model_dir>/model_config.json` holds: later stages
(finetune, evaluate, caption, export) rebuild exactly the same network
from it. The paper's EtENet is `spatial_grid=1, temporal="none"`
(`ModelConfig.is_paper`): one pooled vector per frame, order-free
attention.
"""

import dataclasses

from etenet_tf.errors import UsageError
from etenet_tf.model import encoder as encoder_lib
from etenet_tf.model.captioner import EtENetCaptioner
from etenet_tf.model.decoders import DECODERS
from etenet_tf.model.encoder import ENCODERS, FrameEncoder
from etenet_tf.model.video_context import TEMPORAL_MODES, SpatioTemporalContext
from etenet_tf.options import check, option


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Options of an `EtENetCaptioner`.

    Args:
        encoder: a key of `etenet_tf.model.encoder.ENCODERS`.
        image_size: frame side in pixels.
        num_frames: frames per clip.
        spatial_grid: cells per side of each frame's feature grid (1: one
            pooled vector per frame, as in the paper).
        feature_layer: backbone layer pooled into the grid ("" = last).
        temporal: `none` (the paper), `position` (frame-index embedding),
            `conv` (embedding + 3-D convolution over frames and cells) or
            `gru` (embedding + a bidirectional GRU over the frames).
        context_dim: memory token size after projection (0: the encoder's
            channels; `conv` needs > 0). Unused in paper mode.
        decoder: a key of `etenet_tf.model.decoders.DECODERS`: `sa_lstm`
            (the paper's soft-attention LSTM) or another decoder.
        embedding_dim: word embedding size (SA-LSTM: also the deep output
            size).
        hidden_dim: SA-LSTM state size.
        attention_dim: SA-LSTM attention MLP size.
        dropout: decoder dropout rate.
        num_layers: Transformer layers.
        num_heads: Transformer attention heads (must divide
            `embedding_dim`, the Transformer's model size).
        feedforward_dim: Transformer feed-forward hidden size.
        tie_embeddings: Transformer output projection = the word
            embedding's transpose.

    `model_config.json` files written before `decoder` existed load as
    `sa_lstm` (missing fields take their defaults).
    """

    encoder: str = option("inception_v3", "Frame encoder: a keras.applications backbone, or "
                          "small_cnn (no ImageNet weights; smoke runs).", choices=ENCODERS)
    # the frame size and count come from the prepared data, not from flags
    image_size: int = option(299, "Frame side in pixels.", low=1, flag=False)
    num_frames: int = option(16, "Frames per clip.", low=1, flag=False)
    spatial_grid: int = option(
        1, "Cells per side of each frame's feature grid: 1 pools each frame to one vector (the "
        "paper); N keeps N x N cells with position embeddings, and attention runs over frames "
        "x cells.", low=1)
    feature_layer: str = option("", "Encoder layer pooled into the grid (empty: the last; e.g. "
                                "mixed2 for InceptionV3, 7x7 at 75 px).")
    temporal: str = option(
        "none", "Frame order in the model: none (the paper: order-free attention), position "
        "(frame-index embedding), conv (+ 3-D convolution over frames and cells), gru (+ a "
        "bidirectional GRU over the frames) or delta (gru + each cell's change from frame to "
        "frame).", choices=TEMPORAL_MODES)
    context_dim: int = option(256, "Memory token size after projection when a grid or temporal "
                              "option is on (0: keep the encoder's channels; conv, gru and "
                              "delta need > 0).", low=0)
    decoder: str = option("sa_lstm", "Caption decoder: sa_lstm (the paper's soft-attention "
                          "LSTM) or transformer (self- and cross-attention layers).",
                          choices=DECODERS)
    embedding_dim: int = option(256, "Word embedding size.", low=1)
    hidden_dim: int = option(512, "SA-LSTM state size.", low=1)
    attention_dim: int = option(256, "SA-LSTM attention MLP size.", low=1)
    dropout: float = option(0.5, "Decoder dropout.", low=0.0, high=1.0, high_open=True)
    num_layers: int = option(2, "Transformer decoder layers.", low=1)
    num_heads: int = option(4, "Transformer attention heads (must divide --embedding_dim, the "
                            "Transformer's model size).", low=1)
    feedforward_dim: int = option(1024, "Transformer feed-forward hidden size.", low=1)
    tie_embeddings: bool = option(True, "Transformer: the output projection is the word "
                                  "embedding's transpose (--notie_embeddings: its own).")

    def __post_init__(self):
        # the decoder's own rules (e.g. heads dividing the model size) hold
        # for every config, however it was made: a bad flag stops at once
        if self.decoder in DECODERS:
            DECODERS[self.decoder].check(self)

    def validate(self):
        """Raises `UsageError` for options the encoder or decoder cannot take."""
        check(self)
        DECODERS[self.decoder].check(self)
        if self.temporal in ("conv", "gru", "delta") and self.context_dim < 1:
            raise UsageError(f"--temporal={self.temporal} needs --context_dim > 0 (it runs on "
                             "projected features)")
        try:
            encoder_lib.check_options(self.encoder, self.image_size, self.spatial_grid,
                                      self.feature_layer)
        except encoder_lib.EncoderOptionError as e:
            raise UsageError(f"{e} (--spatial_grid / --feature_layer / --image_size)") from None

    @property
    def is_paper(self):
        """True for the paper's EtENet: no grid, no temporal information."""
        return self.spatial_grid == 1 and self.temporal == "none"

    @classmethod
    def from_dict(cls, values):
        """From `model_config.json`; unknown keys are an error, missing ones
        take their defaults (older files: `decoder=sa_lstm`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown model options {', '.join(unknown)}")
        config = cls(**values)
        check(config)
        return config

    def to_dict(self):
        return dataclasses.asdict(self)


def build_captioner(config, vocabulary, encoder_weights=None):
    """An `EtENetCaptioner` from a `ModelConfig`.

    Args:
        config: the `ModelConfig`.
        vocabulary: list of tokens (special tokens first).
        encoder_weights: `"imagenet"`, `"none"`/None or a weights file, for
            the encoder of a new model (saved models carry their weights).
    """
    encoder = FrameEncoder(config.encoder, config.image_size, config.spatial_grid,
                           config.feature_layer or None, encoder_weights, name="frame_encoder")
    context = None
    if not config.is_paper:
        context = SpatioTemporalContext(config.num_frames, config.spatial_grid, config.temporal,
                                        config.context_dim, name="context")
    decoder = DECODERS[config.decoder].build(config, len(vocabulary))
    return EtENetCaptioner(encoder, decoder, list(vocabulary), context=context,
                           num_frames=None if config.is_paper else config.num_frames)

"""The captioner's options as one typed config, and the model built from it.

`ModelConfig` is what `<model_dir>/model_config.json` holds: later stages
(finetune, evaluate, caption, export) rebuild exactly the same network
from it. The paper's EtENet is `spatial_grid=1, temporal="none"`
(`ModelConfig.paper()`): one pooled vector per frame, order-free
attention.
"""

import dataclasses

from etenet_tf.model.attention_lstm import SoftAttentionLSTM
from etenet_tf.model.captioner import EtENetCaptioner
from etenet_tf.model.encoder import FrameEncoder
from etenet_tf.model.video_context import TEMPORAL_MODES, SpatioTemporalContext


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
        temporal: `none` (the paper), `position` (frame-index embedding)
            or `conv` (embedding + 3-D convolution over frames and cells).
        context_dim: memory token size after projection (0: the encoder's
            channels; `conv` needs > 0). Unused in paper mode.
        embedding_dim: word embedding size (and deep output size).
        hidden_dim: LSTM state size.
        attention_dim: attention MLP size.
        dropout: decoder dropout rate.
    """

    encoder: str = "inception_v3"
    image_size: int = 299
    num_frames: int = 16
    spatial_grid: int = 1
    feature_layer: str = ""
    temporal: str = "none"
    context_dim: int = 256
    embedding_dim: int = 256
    hidden_dim: int = 512
    attention_dim: int = 256
    dropout: float = 0.5

    def __post_init__(self):
        if self.temporal not in TEMPORAL_MODES:
            raise ValueError(f"temporal must be one of {', '.join(TEMPORAL_MODES)}")

    @property
    def is_paper(self):
        """True for the paper's EtENet: no grid, no temporal information."""
        return self.spatial_grid == 1 and self.temporal == "none"

    @classmethod
    def from_dict(cls, values):
        """From `model_config.json`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown model options {', '.join(unknown)}")
        return cls(**values)

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
    decoder = SoftAttentionLSTM(len(vocabulary), config.embedding_dim, config.hidden_dim,
                                config.attention_dim, config.dropout, name="attention_lstm")
    return EtENetCaptioner(encoder, decoder, list(vocabulary), context=context,
                           num_frames=None if config.is_paper else config.num_frames)

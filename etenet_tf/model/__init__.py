"""The captioner: frame encoder, spatio-temporal context, attention LSTM."""

from etenet_tf.model.attention_lstm import SoftAttentionLSTM
from etenet_tf.model.captioner import EtENetCaptioner
from etenet_tf.model.config import ModelConfig, build_captioner
from etenet_tf.model.encoder import (
                                     ENCODERS,
                                     EncoderOptionError,
                                     EncoderSpec,
                                     EncoderWeightsError,
                                     FrameEncoder,
)
from etenet_tf.model.losses import CaptionLoss
from etenet_tf.model.video_context import TEMPORAL_MODES, SpatioTemporalContext

__all__ = ["ENCODERS", "TEMPORAL_MODES", "CaptionLoss", "EncoderOptionError", "EncoderSpec",
           "EncoderWeightsError", "EtENetCaptioner", "FrameEncoder", "ModelConfig",
           "SoftAttentionLSTM", "SpatioTemporalContext", "build_captioner"]

"""The captioner: frame encoder, spatio-temporal context, caption decoder."""

from etenet_tf.model.attention_lstm import SoftAttentionLSTM
from etenet_tf.model.captioner import EtENetCaptioner
from etenet_tf.model.config import ModelConfig, build_captioner
from etenet_tf.model.decoder import CaptionDecoder
from etenet_tf.model.decoders import DECODERS, DecoderSpec
from etenet_tf.model.encoder import (
                                     ENCODERS,
                                     EncoderOptionError,
                                     EncoderSpec,
                                     EncoderWeightsError,
                                     FrameEncoder,
)
from etenet_tf.model.losses import CaptionLoss
from etenet_tf.model.video_context import TEMPORAL_MODES, SpatioTemporalContext

__all__ = ["DECODERS", "ENCODERS", "TEMPORAL_MODES", "CaptionDecoder", "CaptionLoss",
           "DecoderSpec", "EncoderOptionError", "EncoderSpec",
           "EncoderWeightsError", "EtENetCaptioner", "FrameEncoder", "ModelConfig",
           "SoftAttentionLSTM", "SpatioTemporalContext", "build_captioner"]

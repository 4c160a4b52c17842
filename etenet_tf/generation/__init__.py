"""Caption generation: decoder-independent samplers and captioning."""

from etenet_tf.generation.captioning import CaptionGenerator, Captions, generate
from etenet_tf.generation.config import DecodingConfig
from etenet_tf.generation.samplers import (
                                           BeamSampler,
                                           GreedySampler,
                                           RandomSampler,
                                           RowSampler,
                                           SampledSequences,
                                           Sampler,
                                           TopKSampler,
                                           TopPSampler,
                                           repeat_rows,
)

__all__ = ["BeamSampler", "CaptionGenerator", "Captions", "DecodingConfig", "GreedySampler",
           "RandomSampler", "RowSampler", "SampledSequences", "Sampler", "TopKSampler",
           "TopPSampler", "generate", "repeat_rows"]

"""How captions are generated: `DecodingConfig` and the sampler it gives."""

import dataclasses

from etenet_tf.errors import UsageError
from etenet_tf.generation.samplers import BeamSampler, GreedySampler


@dataclasses.dataclass(frozen=True)
class DecodingConfig:
    """Caption generation at evaluation, captioning and export time.

    Args:
        beam_size: beams per clip (1 = greedy).
        length_penalty: GNMT length penalty `alpha` of the final beam choice
            (0: none).
        max_decode_length: most tokens generated per caption, `<end>`
            included.
        num_captions: captions returned per clip, best first (<=
            `beam_size`).
    """

    beam_size: int = 5
    length_penalty: float = 0.6
    max_decode_length: int = 20
    num_captions: int = 1

    def validate(self):
        if self.beam_size < 1 or self.max_decode_length < 1:
            raise UsageError("--beam_size and --max_decode_length must be >= 1")
        if not 1 <= self.num_captions <= self.beam_size:
            raise UsageError(f"--num_captions={self.num_captions} must be between 1 and "
                             f"--beam_size={self.beam_size} (each caption is a beam)")
        if self.length_penalty < 0:
            raise UsageError("--length_penalty must be >= 0")

    def sampler(self):
        """The sampler these settings describe."""
        if self.beam_size == 1:
            return GreedySampler(self.length_penalty)
        return BeamSampler(self.beam_size, self.length_penalty, self.num_captions)

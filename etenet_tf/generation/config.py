"""How captions are generated: `DecodingConfig` and the sampler it gives."""

import dataclasses

from etenet_tf.errors import UsageError
from etenet_tf.generation.samplers import BeamSampler, GreedySampler
from etenet_tf.options import check, option


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

    beam_size: int = option(5, "Beam size (1 = greedy).", low=1)
    length_penalty: float = option(0.6, "Beam search length penalty alpha.", low=0.0)
    max_decode_length: int = option(20, "Most tokens generated per caption.", low=1)
    num_captions: int = option(1, "Captions returned per video, best first (<= --beam_size).",
                               low=1)

    def validate(self):
        check(self)
        if self.num_captions > self.beam_size:
            raise UsageError(f"--num_captions={self.num_captions} must be <= "
                             f"--beam_size={self.beam_size} (each caption is a beam)")

    def sampler(self):
        """The sampler these settings describe."""
        if self.beam_size == 1:
            return GreedySampler(self.length_penalty)
        return BeamSampler(self.beam_size, self.length_penalty, self.num_captions)

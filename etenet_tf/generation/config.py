"""How captions are generated: `DecodingConfig` and the sampler it gives."""

import dataclasses

from etenet_tf.errors import UsageError
from etenet_tf.generation.samplers import (
    DRAWN_RULES,
    BeamSampler,
    GreedySampler,
    drawn_sampler,
)
from etenet_tf.options import check, option

SAMPLING_RULES = ("beam", *DRAWN_RULES)


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
            `beam_size`) with beam search; drawn captions otherwise.
        sampling: `beam` (beam search; greedy at `beam_size=1`), `random`
            (draws from the whole distribution), `top_k` or `top_p`.
        top_k: tokens kept per step by `top_k` sampling.
        top_p: probability mass kept per step by `top_p` (nucleus) sampling.
        temperature: logits are divided by it before a draw.
        sampling_seed: seed of the draws (the same seed, the same captions).
    """

    beam_size: int = option(5, "Beam size (1 = greedy).", low=1)
    length_penalty: float = option(0.6, "Beam search length penalty alpha.", low=0.0)
    max_decode_length: int = option(20, "Most tokens generated per caption.", low=1)
    num_captions: int = option(1, "Captions returned per video, best first (<= --beam_size) "
                               "with beam search, drawn with another --sampling.", low=1)
    sampling: str = option("beam", "How captions are chosen: beam (beam search, greedy at "
                           "--beam_size=1), random, top_k or top_p (drawn).",
                           choices=SAMPLING_RULES)
    top_k: int = option(10, "Tokens kept per step by --sampling=top_k.", low=1)
    top_p: float = option(0.9, "Probability mass kept per step by --sampling=top_p.", low=0.0,
                          high=1.0, low_open=True)
    temperature: float = option(1.0, "Logits are divided by it before a draw (--sampling="
                                "random, top_k, top_p).", low=0.0, low_open=True)
    sampling_seed: int = option(0, "Seed of drawn captions.", low=0)

    def validate(self):
        check(self)
        if self.sampling == "beam" and self.num_captions > self.beam_size:
            raise UsageError(f"--num_captions={self.num_captions} must be <= "
                             f"--beam_size={self.beam_size} (each caption is a beam)")

    def sampler(self):
        """The sampler these settings describe."""
        if self.sampling != "beam":
            return drawn_sampler(self.sampling, self.num_captions, self.temperature,
                                 self.top_k, self.top_p, seed=(0, self.sampling_seed))
        if self.beam_size == 1:
            return GreedySampler(self.length_penalty)
        return BeamSampler(self.beam_size, self.length_penalty, self.num_captions)

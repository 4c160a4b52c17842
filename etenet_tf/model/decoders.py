"""The caption decoders `--decoder` chooses from.

Each entry builds one `CaptionDecoder` subclass from a `ModelConfig` and
checks the options it reads. Adding a decoder: its module (the layer, its
`build` and `check` functions), one entry here, and its options as
`ModelConfig` fields (see docs/decoders.md).
"""

import dataclasses
from typing import Callable

from etenet_tf.model import attention_lstm, transformer_decoder


@dataclasses.dataclass(frozen=True)
class DecoderSpec:
    """How to build one decoder.

    Args:
        build: `(model_config, vocabulary_size) -> CaptionDecoder`.
        check: `(model_config) -> None`, raises `UsageError` for options
            this decoder cannot take.
        options: the `ModelConfig` fields it reads (for the docs, model
            cards and the demo).
        title: what it is, in words ("soft-attention LSTM"), for model
            cards and the demo.
    """

    build: Callable
    check: Callable
    options: tuple
    title: str


DECODERS = {
    "sa_lstm": DecoderSpec(attention_lstm.build, attention_lstm.check,
                           attention_lstm.OPTIONS, "soft-attention LSTM"),
    "transformer": DecoderSpec(transformer_decoder.build, transformer_decoder.check,
                               transformer_decoder.OPTIONS, "Transformer"),
}

"""Decoding: the captions of a fixed model stay the same through refactors."""

import json

import keras
import numpy as np
import pytest

from etenet_tf.model.config import ModelConfig, build_captioner
from etenet_tf.text.vocabulary import SPECIAL_TOKENS

from conftest import data_path

VOCAB = list(SPECIAL_TOKENS) + [f"w{i}" for i in range(20)]
GOLDEN_OPTIONS = {"paper": {}, "grid_gru": dict(spatial_grid=2, temporal="gru", context_dim=16)}


def golden_model(name):
    """The captioner of tests/data/sampler_golden.*: seeded encoder, and a
    decoder that memorised four captions of different lengths."""
    keras.utils.set_random_seed(7)
    model = build_captioner(ModelConfig(image_size=75, num_frames=3, feature_layer="mixed2",
                                        embedding_dim=16, hidden_dim=24, attention_dim=16,
                                        dropout=0.0, **GOLDEN_OPTIONS[name]), VOCAB)
    weights = np.load(data_path("sampler_golden.npz"))
    for layer in (model.context, model.decoder):
        if layer is not None:
            layer.set_weights([weights[f"{name}/{layer.name}/{i}"]
                               for i in range(len(layer.weights))])
    frames = np.random.default_rng(11).integers(0, 256, (4, 3, 75, 75, 3)).astype("uint8")
    return model, frames


@pytest.mark.parametrize("name", list(GOLDEN_OPTIONS))
@pytest.mark.parametrize("beam_size", [1, 3])
def test_captions_of_a_fixed_model_are_unchanged(name, beam_size):
    """Recorded with the beam search before the sampler refactor."""
    expected = json.load(open(data_path("sampler_golden.json")))[f"{name}_beam{beam_size}"]
    model, frames = golden_model(name)
    ids, scores, attention = model.generate(model.encode(frames), beam_size=beam_size,
                                            max_length=8)
    assert ids.numpy().tolist() == expected["ids"]
    np.testing.assert_allclose(scores.numpy(), expected["scores"], rtol=1e-5)
    np.testing.assert_allclose(attention.numpy(), expected["attention"], atol=1e-5)

# Run once, from the repo root, with the code before the sampler refactor:
#   TF_NUM_INTRAOP_THREADS=1 python tests/data/make_sampler_golden.py
"""Writes tests/data/sampler_golden.{npz,json}: a tiny captioner whose decoder
memorised four captions of different lengths, and what the beam search of
the time (before the sampler refactor) generates from it."""
import os; import json; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import keras
import numpy as np

from etenet_tf.model.config import ModelConfig, build_captioner
from etenet_tf.model.losses import CaptionLoss
from etenet_tf.text.vocabulary import SPECIAL_TOKENS

VOCAB = list(SPECIAL_TOKENS) + [f"w{i}" for i in range(20)]
CAPTIONS = [[4, 5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 4], [15, 4, 16]]
out, weights = {}, {}
for name, opts in [("paper", {}), ("grid_gru", dict(spatial_grid=2, temporal="gru", context_dim=16))]:
    keras.utils.set_random_seed(7)
    model = build_captioner(ModelConfig(image_size=75, num_frames=3, feature_layer="mixed2",
                                        embedding_dim=16, hidden_dim=24, attention_dim=16,
                                        dropout=0.0, **opts), VOCAB)
    frames = np.random.default_rng(11).integers(0, 256, (4, 3, 75, 75, 3)).astype("uint8")
    features = model.encode(frames).numpy()
    seqs = np.zeros((4, 8), "int32")
    for i, c in enumerate(CAPTIONS):
        seqs[i, :len(c) + 2] = [2] + c + [3]
    model.encoder.trainable = False
    model.compile(keras.optimizers.Adam(1e-2), CaptionLoss())
    model.fit({"features": features, "tokens": seqs[:, :-1]}, seqs[:, 1:], epochs=150, verbose=0)
    for layer in (model.context, model.decoder):
        if layer is not None:
            for i, w in enumerate(layer.get_weights()):
                weights[f"{name}/{layer.name}/{i}"] = w
    for beam in (1, 3):
        ids, scores, attention = model.generate(features, beam_size=beam, max_length=8)
        out[f"{name}_beam{beam}"] = {"ids": ids.numpy().tolist(), "scores": scores.numpy().tolist(),
                                     "attention": np.round(attention.numpy(), 6).tolist()}
np.savez("tests/data/sampler_golden.npz", **weights)
json.dump(out, open("tests/data/sampler_golden.json", "w"))
print({k: v["ids"] for k, v in out.items()})

"""12. The Transformer decoder beside the SA-LSTM: what each costs.

    python -m benchmarks.decoder_compare [--batch_size=32] [--clips=8] [--output=x.json]

Side by side, from one run on one machine, at the package's default decoder
sizes (embedding 256; SA-LSTM 512 state, 256 attention; Transformer 2
layers, 4 heads, feed-forward 1024, tied embeddings), a vocabulary of
10,000 and 16 memory tokens of 2048 channels (InceptionV3, one pooled
vector per frame, 16 frames):

- a training step on cached features: the decoder's teacher-forced pass,
  the loss and Adam, caption length 20 (median seconds);
- beam-5 captioning per clip, 20 steps (no caption ends early),
  decoder + search only (the encoder is not run): the SA-LSTM, the
  Transformer with its key/value cache, and the Transformer without a
  cache (every step re-runs the teacher-forced pass over the whole
  prefix buffer, as a decoder without `step` would).

Target: Transformer with cache <= 1.5x the SA-LSTM's captioning time.
Quality (CIDEr, acc_* over 3 seeds) is not measured here.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402
from etenet_tf.generation import BeamSampler  # noqa: E402
from etenet_tf.model.config import ModelConfig  # noqa: E402
from etenet_tf.model.decoders import DECODERS  # noqa: E402
from etenet_tf.model.losses import CaptionLoss  # noqa: E402
from etenet_tf.text.vocabulary import START_ID  # noqa: E402

VOCABULARY, STEPS, BEAM, TOKENS, CHANNELS = 10_000, 20, 5, 16, 2048
TARGET = 1.5


def _decoder(name):
    keras.utils.set_random_seed(0)
    layer = DECODERS[name].build(ModelConfig(decoder=name), VOCABULARY)
    layer.build((None, TOKENS, CHANNELS), (None, None))
    return layer


def train_step_seconds(decoder, batch_size):
    rng = np.random.default_rng(0)
    memory = tf.constant(rng.standard_normal((batch_size, TOKENS, CHANNELS)), tf.float32)
    tokens = tf.constant(rng.integers(4, VOCABULARY, (batch_size, STEPS + 1)), tf.int32)
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(decoder.trainable_variables)
    loss_fn = CaptionLoss()

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = decoder(memory, tokens[:, :-1], training=True)
            loss = loss_fn(tokens[:, 1:], logits)
        grads = tape.gradient(loss, decoder.trainable_variables)
        optimizer.apply(grads, decoder.trainable_variables)
        return loss

    return common.seconds(lambda: float(step()), repeats=5, warmup=2)


def _cached_step(decoder, memory):
    constants, state = decoder.initial_state(memory, STEPS)
    constants = tf.nest.map_structure(lambda c: tf.repeat(c, BEAM, axis=0), constants)
    return (lambda tokens, state, index: decoder.step(tokens, state, index, constants)), state


def _uncached_step(decoder, memory):
    """Re-runs the whole teacher-forced pass over a token buffer each step."""
    rows_memory = tf.repeat(memory, BEAM, axis=0)

    def step_fn(tokens, buffer, index):
        buffer = buffer + tf.one_hot(index, STEPS, dtype=tf.int32)[None, :] * tokens[:, None]
        logits, attention = decoder(rows_memory, buffer, return_attention=True)
        return logits[:, index], buffer, attention[:, index]

    return step_fn, tf.zeros([tf.shape(memory)[0], STEPS], tf.int32)


def caption_seconds_per_clip(decoder, clips, cached=True):
    memory = tf.random.stateless_normal([clips, TOKENS, CHANNELS], [1, 2])
    sampler = BeamSampler(BEAM, 0.6)

    @tf.function
    def run():
        step_fn, state = (_cached_step if cached else _uncached_step)(decoder, memory)
        # end_id=-1: no caption ends, every clip runs all 20 steps
        return sampler(step_fn, state, clips, max_length=STEPS, end_id=-1,
                       start_id=START_ID).ids

    return common.seconds(lambda: run().numpy(), repeats=3, warmup=1) / clips


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--output", default="")
    args = parser.parse_args(argv)
    lstm, transformer = _decoder("sa_lstm"), _decoder("transformer")
    rows = {
        "sa_lstm": {"train_step_s": train_step_seconds(lstm, args.batch_size),
                    "beam5_s_per_clip": caption_seconds_per_clip(lstm, args.clips),
                    "parameters": lstm.count_params()},
        "transformer (cache)": {
            "train_step_s": train_step_seconds(transformer, args.batch_size),
            "beam5_s_per_clip": caption_seconds_per_clip(transformer, args.clips),
            "parameters": transformer.count_params()},
        "transformer (no cache)": {
            "beam5_s_per_clip": caption_seconds_per_clip(transformer, args.clips, cached=False)},
    }
    ratio = rows["transformer (cache)"]["beam5_s_per_clip"] / rows["sa_lstm"]["beam5_s_per_clip"]
    result = {"benchmark": "decoder_compare", "machine": common.machine(),
              "settings": {"vocabulary": VOCABULARY, "steps": STEPS, "beam": BEAM,
                           "memory_tokens": TOKENS, "channels": CHANNELS,
                           "batch_size": args.batch_size, "clips": args.clips},
              "decoders": rows,
              "transformer_cache_vs_lstm": ratio, "target": f"<= {TARGET}x",
              "meets_target": ratio <= TARGET,
              "cache_speedup": rows["transformer (no cache)"]["beam5_s_per_clip"]
              / rows["transformer (cache)"]["beam5_s_per_clip"]}
    print(f"{'decoder':24} {'train step s':>13} {'beam-5 s/clip':>14} {'params':>10}")
    for name, row in rows.items():
        train = f"{row['train_step_s']:.4f}" if "train_step_s" in row else "-"
        params = str(row.get("parameters", "-"))
        print(f"{name:24} {train:>13} {row['beam5_s_per_clip']:>14.4f} {params:>10}")
    print(f"transformer (cache) / sa_lstm captioning: {ratio:.2f}x (target <= {TARGET}x); "
          f"cache speed-up {result['cache_speedup']:.2f}x")
    print(json.dumps(result))
    if args.output:
        from etenet_tf.files import write_json
        write_json(args.output, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

"""8. The CIDEr-D reward's share of a self-critical training step.

One scst step at MSR-VTT's sizes: B clips x K sampled captions of up to
20 tokens, 20 references per clip, a vocabulary of 10,000 words, the
package's default decoder on cached features (16 frames, InceptionV3
channels). The reward alone is timed on the same shapes as a compiled
function; the step includes sampling, the reward, the teacher-forced
log-probabilities and the update.
"""

import os
import shutil

import numpy as np
import tensorflow as tf

from benchmarks import common
from etenet_tf.evaluation.cider import CiderD
from etenet_tf.text import ngrams
from etenet_tf.text.vocabulary import END_ID, SPECIAL_TOKENS
from etenet_tf.training.objectives import SelfCritical

TARGET = 0.20


def _captions(rng, count, vocabulary_size, max_length):
    """Random word ids of 6..max_length-1 words, then <end> and padding."""
    out = np.zeros((count, max_length), np.int32)
    for row in out:
        length = rng.integers(min(6, max_length - 1), max_length)
        row[:length] = rng.integers(len(SPECIAL_TOKENS), vocabulary_size, length)
        row[length] = END_ID
    return out


def run(ctx):
    work = os.path.join(ctx.work_dir, "scst_reward")
    shutil.rmtree(work, ignore_errors=True)
    rng = np.random.default_rng(0)
    batch, k, refs, length = ctx.batch_size, ctx.scst_samples, 20, ctx.max_length
    vocab_size = ctx.vocabulary_size
    vocabulary = list(SPECIAL_TOKENS) + [f"w{i}" for i in range(vocab_size - 4)]
    # document frequencies of a training set of 2000 clips x 20 references
    corpus = _captions(rng, 2000 * refs, vocab_size, length).reshape(2000, refs, length)
    documents = [[row[:list(row).index(END_ID)].tolist() for row in clip] for clip in corpus]
    cider = CiderD(*ngrams.document_frequencies(documents, vocab_size), vocab_size)
    references = tf.constant(_captions(rng, batch * refs, vocab_size, length)
                             .reshape(batch, refs, length))
    samples = tf.constant(_captions(rng, batch * k, vocab_size, length))
    reward = tf.function(lambda s, r: cider(s, tf.repeat(r, k, axis=0)))
    reward_s = common.seconds(lambda: reward(samples, references).numpy(), repeats=5, warmup=2)

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = common.build_model(vocabulary, 299, num_frames=16)
    model.encoder.set_trainable_blocks(0)
    objective = SelfCritical(cider, num_samples=k, max_length=length)
    trainer = common.trainer(model, strategy, work, kind="features", batch_size=batch,
                             decoder_learning_rate=5e-5, objective=objective)
    features = tf.constant(rng.standard_normal((batch, 16, 1, 1, model.encoder.output_dim)),
                           tf.float32)
    step_batch = {"features": features, "references": references}
    step_s = common.seconds(lambda: float(trainer.train_step(step_batch)["loss"]), repeats=3,
                            warmup=1)
    share = reward_s / step_s
    return {
        "title": f"scst step: CIDEr-D reward share ({batch} clips x {k} samples x {refs} refs, "
                 f"vocabulary {vocab_size})",
        "a": f"{reward_s * 1000:.0f} ms reward", "b": f"{step_s * 1000:.0f} ms step",
        "ratio": share, "target": f"reward <= {TARGET:.0%} of the step", "met": share <= TARGET,
        "details": {"clips": batch, "samples_per_clip": k, "references_per_clip": refs,
                    "max_length": length, "vocabulary_size": vocab_size,
                    "reward_seconds": reward_s, "step_seconds": step_s},
    }

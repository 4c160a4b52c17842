"""tf.data input pipelines for training and evaluation.

Training batches are `(x, y)` for teacher forcing:
`x = {"frames" or "features": ..., "tokens": ids[:-1]}`, `y = ids[1:]`
(`CaptionLoss` masks the `<pad>` targets itself). Each epoch draws one reference caption per
video at random. The order and the caption choice depend only on
`(seed, epoch)`, so a resumed run can `skip()` to the exact batch it stopped
at.

Evaluation batches are dicts with `video_id`, the frames or features, and
`references` (all captions, padded with empty strings).

Sharding: with a `tf.distribute.InputContext`, each input pipeline keeps
every n-th video (after enumeration), which works with any number of files.
"""

import tensorflow as tf

from etenet_tf.data import records
from etenet_tf.errors import MissingInputError

AUTOTUNE = tf.data.AUTOTUNE


def _without_autotuning(ds):
    """`ds` with tf.data's autotuning thread off (`AUTOTUNE` parallel calls
    then run one per core). An iterator freed before its input ends (each
    training epoch's, which stops at its step count) waits for that thread's
    next wake-up, which comes at doubling intervals up to a minute: 6 to 36 s
    of idle cores per epoch (`python -m benchmarks.run --only=epoch_end`)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def _read(files, kind):
    if not files:
        raise MissingInputError("no record files given to the input pipeline")
    parse = records.parse_frames if kind == "frames" else records.parse_features
    ds = tf.data.TFRecordDataset(list(files), num_parallel_reads=min(len(files), 8))
    return ds.map(parse, num_parallel_calls=AUTOTUNE)


def _inputs(example, kind, image_size):
    if kind == "frames":
        return records.decode_jpeg_frames(example["frames"], image_size)
    return example["features"]


def _shuffled(files, kind, epoch, seed, input_context, shuffle_buffer):
    """`(index, example)` pairs of this pipeline's share, in the order of
    (seed, epoch)."""
    ds = _read(files, kind).enumerate()
    if input_context and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return ds.shuffle(shuffle_buffer, seed=seed * 100003 + epoch, reshuffle_each_iteration=False)


def train_dataset(files, kind, tokenizer, batch_size, *, epoch=0, seed=0, image_size=None,
                  input_context=None, shuffle_buffer=2048):
    """Training batches for one epoch.

    Args:
        files: record shard paths.
        kind: `"frames"` (JPEG frame records) or `"features"` (cache).
        tokenizer: a `CaptionTokenizer`.
        batch_size: per-pipeline batch size (remainder dropped so every
            replica sees full, static-shaped batches).
        epoch: epoch number; selects shuffle order and captions.
        seed: base seed.
        image_size: frame side (frames only).
        input_context: optional `tf.distribute.InputContext`.
        shuffle_buffer: shuffle buffer size in videos.
    """
    ds = _shuffled(files, kind, epoch, seed, input_context, shuffle_buffer)

    def to_example(index, example):
        captions = example["captions"]
        pick = tf.random.stateless_uniform(
            [], seed=tf.stack([tf.cast(seed * 100003 + epoch, tf.int64), index]),
            maxval=tf.shape(captions, out_type=tf.int64)[0], dtype=tf.int64,
        )
        ids = tokenizer(captions[pick][tf.newaxis])[0]
        x = {kind: _inputs(example, kind, image_size), "tokens": ids[:-1]}
        return x, ids[1:]

    ds = ds.map(to_example, num_parallel_calls=AUTOTUNE)
    return _without_autotuning(ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE))


def references_dataset(files, kind, tokenizer, batch_size, *, epoch=0, seed=0, image_size=None,
                       input_context=None, shuffle_buffer=2048):
    """Training batches with every reference of each clip, for objectives
    that score the model's own captions (self-critical training).

    Same order and sharding as `train_dataset`. Batches are dicts:
    `{kind: inputs, "references": int32 [B, R, L]}` with each reference as
    word ids then `<end>` (no `<start>`), `<pad>` after it and as the
    rows of clips with fewer references (`L` = the tokenizer's length - 1).
    """
    ds = _shuffled(files, kind, epoch, seed, input_context, shuffle_buffer)

    def to_example(index, example):
        references = tokenizer(example["captions"])[:, 1:]
        return {kind: _inputs(example, kind, image_size), "references": references}

    ds = ds.map(to_example, num_parallel_calls=AUTOTUNE)
    return _without_autotuning(
        ds.padded_batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE))


def eval_dataset(files, kind, batch_size, *, image_size=None, input_context=None):
    """Evaluation batches: every video once, with all its references."""
    ds = _read(files, kind)
    if input_context and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)

    def to_example(example):
        return {
            "video_id": example["video_id"],
            kind: _inputs(example, kind, image_size),
            "references": example["captions"],
        }

    ds = ds.map(to_example, num_parallel_calls=AUTOTUNE)
    return _without_autotuning(ds.padded_batch(batch_size, padding_values={
        "video_id": "", kind: tf.constant(0, tf.uint8 if kind == "frames" else tf.float32),
        "references": "",
    }).prefetch(AUTOTUNE))


def steps_per_epoch(num_videos, global_batch_size):
    """Full batches in one epoch (the remainder is dropped, so 0 when the
    split is smaller than one batch)."""
    return num_videos // global_batch_size

"""7. What the spatial grid and the temporal options cost.

At InceptionV3's own size (299 px, an 8x8 final map), for grid 1 (the
paper) and the grids the model offers: the feature cache per 1000 clips
(bytes of real serialized records) and a pretrain training step on cached
features (decoder with context, package default sizes). Then, at grid 1
and at the largest grid, the step time of each temporal option.
"""

import os
import shutil

import numpy as np
import tensorflow as tf

from benchmarks import common
from etenet_tf.data import records
from etenet_tf.text import vocabulary as vocab_lib


def _step_seconds(ctx, work, grid, temporal, frames, vocabulary, caption_length=12):
    """Median seconds of one decoder training step on random cached features."""
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = common.build_model(vocabulary, ctx.grid_image_size, num_frames=frames,
                                   spatial_grid=grid, temporal=temporal)
    model.encoder.set_trainable_blocks(0)
    trainer = common.trainer(model, strategy, os.path.join(work, f"g{grid}_{temporal}"),
                             kind="features", batch_size=ctx.batch_size)
    rng = np.random.default_rng(0)
    shape = (frames, grid, grid, model.encoder.output_dim)
    features = rng.standard_normal((ctx.batch_size,) + shape).astype("float32")
    tokens = rng.integers(4, len(vocabulary), (ctx.batch_size, caption_length + 1)).astype("int32")
    batch = ({"features": features, "tokens": tokens[:, :-1]}, tokens[:, 1:])
    seconds = common.seconds(lambda: float(trainer.train_step(batch)["loss"]), repeats=5,
                             warmup=2)
    return seconds, shape, model.decoder.count_params() + (
        model.context.count_params() if model.context is not None else 0)


def _cache_bytes_per_1000(feature_shape):
    """Bytes of 1000 serialized feature records (`records.features_example`)."""
    example = records.features_example("video0000", np.zeros(feature_shape, np.float32),
                                       [b"a man is talking about a video game"] * 20)
    return 1000 * len(example)


def run(ctx):
    work = os.path.join(ctx.work_dir, "grid_cost")
    shutil.rmtree(work, ignore_errors=True)
    frames = ctx.grid_frames
    vocabulary = list(vocab_lib.SPECIAL_TOKENS) + [f"w{i}" for i in range(ctx.vocabulary_size - 4)]
    grids = [int(g) for g in ctx.grids.split(",")]
    rows = {}
    for grid in grids:
        temporal = "none" if grid == 1 else "position"
        seconds, shape, params = _step_seconds(ctx, work, grid, temporal, frames, vocabulary)
        rows[f"grid {grid}"] = {"grid": grid, "temporal": temporal, "step_seconds": seconds,
                                "memory_tokens": shape[0] * grid * grid,
                                "cache_mb_per_1000_clips": _cache_bytes_per_1000(shape) / 1e6,
                                "decoder_parameters": params}
    temporal_rows = {}
    for grid in sorted({1, grids[-1]}):
        for temporal in ("none", "position", "conv", "gru"):
            seconds, _, params = _step_seconds(ctx, work, grid, temporal, frames, vocabulary)
            temporal_rows[f"grid {grid}, {temporal}"] = {"step_seconds": seconds,
                                                        "decoder_parameters": params}
    base = rows[f"grid {grids[0]}"]
    last = rows[f"grid {grids[-1]}"]
    gru = temporal_rows[f"grid {grids[-1]}, gru"]["step_seconds"]
    none = temporal_rows[f"grid {grids[-1]}, none"]["step_seconds"]
    return {
        "title": (f"pretrain step and feature cache at {ctx.grid_image_size} px, {frames} frames: "
                  f"grid {grids[-1]} vs grid {grids[0]}"),
        "a": f"{last['step_seconds'] * 1000:.0f} ms, {last['cache_mb_per_1000_clips']:.0f} MB/1000",
        "b": f"{base['step_seconds'] * 1000:.0f} ms, {base['cache_mb_per_1000_clips']:.0f} MB/1000",
        "ratio": last["step_seconds"] / base["step_seconds"], "target": "-", "met": None,
        "details": {"image_size": ctx.grid_image_size, "frames": frames,
                    "batch_size": ctx.batch_size, "vocabulary_size": len(vocabulary),
                    "grids": rows, "temporal": temporal_rows,
                    "gru_over_none_at_largest_grid": gru / none},
    }

"""1. A pretrain epoch from cached features vs through the frozen encoder."""

import os
import shutil
import time

import tensorflow as tf

from benchmarks import common
from etenet_tf.data import pipeline, records
from etenet_tf.training import feature_cache

TARGET = 20.0


def epoch_seconds(trainer, data, kind, epoch, steps=None):
    """Wall time of one epoch (or its first `steps`) through the real input
    pipeline, its per-epoch set-up included."""
    files = records.list_shards(data["dir"], "train")
    steps = steps or pipeline.steps_per_epoch(data["videos"], trainer.global_batch_size)

    def make(batch_size, epoch, context):
        return pipeline.train_dataset(files, kind, data["tokenizer"], batch_size, epoch=epoch,
                                      image_size=data["image_size"], input_context=context)

    start = time.perf_counter()
    for batch in trainer.distributed_epoch(make, epoch, steps):
        float(trainer.train_step(batch)["loss"])  # as the training loop does, every step
    return time.perf_counter() - start


def run(ctx):
    shapes = ctx.shapes(image_size=ctx.pretrain_image_size)
    work = os.path.join(ctx.work_dir, "pretrain_cache")
    shutil.rmtree(work, ignore_errors=True)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = common.build_model(shapes.vocabulary.tokens, shapes.image_size)
    model.encoder.set_trainable_blocks(0)
    start = time.perf_counter()
    feature_cache.build_cache(model, shapes.records_dir, os.path.join(work, "features"),
                              ("train",), batch_size=32, image_size=shapes.image_size)
    cache_seconds = time.perf_counter() - start
    trainers = {
        kind: common.trainer(model, strategy, work, kind=kind, batch_size=ctx.batch_size)
        for kind in ("features", "frames")
    }
    data = {"features": os.path.join(work, "features"), "frames": shapes.records_dir}
    times = {}
    for kind, trainer in trainers.items():
        d = {"dir": data[kind], "videos": shapes.num_videos(), "tokenizer": shapes.tokenizer,
             "image_size": shapes.image_size}
        epoch_seconds(trainer, d, kind, 0, steps=2)  # traces the step
        epochs = range(1, 4 if kind == "features" else 2)
        runs = [epoch_seconds(trainer, d, kind, e) for e in epochs]
        times[kind] = sorted(runs)[len(runs) // 2]
    ratio = times["frames"] / times["features"]
    return {
        "title": "pretrain epoch: cached features vs frozen encoder",
        "a": f"{times['features']:.2f} s cached",
        "b": f"{times['frames']:.2f} s through encoder",
        "ratio": ratio, "target": f">= {TARGET:.0f}x faster", "met": ratio >= TARGET,
        "details": {
            "epoch_seconds_cached_features": times["features"],
            "epoch_seconds_frozen_encoder": times["frames"],
            "cache_build_seconds": cache_seconds,
            "train_videos": shapes.num_videos(), "batch_size": ctx.batch_size,
            "frames": shapes.frames, "image_size": shapes.image_size,
            "epochs_to_repay_cache": cache_seconds / max(times["frames"] - times["features"], 1e-9),
        },
    }

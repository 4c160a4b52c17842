"""12. The wait at each training epoch's end: the loop's input now vs as it
was (a `tf.distribute` distributed dataset, tf.data autotuning on).

An epoch's iterator is freed when its steps are done, before its input ends.
With autotuning on, freeing it waits for the autotuning thread's next
wake-up, which comes at doubling intervals (up to a minute): on 2 cores that
was 6 to 36 s of idle cores per training epoch. The pipelines now run with
autotuning off, and with one replica on one worker the loop iterates the
plain dataset (the distributed iterator's own device prefetch autotunes
whatever its input says). Both ways are timed on the same records: with a
consumer that sleeps as long as a training step takes (the wait), and
without one (how fast the input alone runs, which autotuning could change).
"""

import os
import shutil
import time

import tensorflow as tf

from etenet_tf.data import pipeline, records
from etenet_tf.training import feature_cache

TARGET = 0.5  # seconds left at the epoch's end


def _waits(make_iterable, epochs, step_seconds):
    """Seconds to free each epoch's iterator, after it yielded every batch."""
    waits = []
    for epoch in range(epochs):
        batches = iter(make_iterable(epoch))
        for _ in batches:
            time.sleep(step_seconds)
        start = time.perf_counter()
        del batches
        waits.append(time.perf_counter() - start)
    return waits


def _input_seconds(make_iterable, epochs):
    """Seconds to read each epoch's batches as fast as the input gives them."""
    seconds = []
    for epoch in range(epochs):
        start = time.perf_counter()
        for _ in make_iterable(epoch):
            pass
        seconds.append(time.perf_counter() - start)
    return seconds


def _median(values):
    return sorted(values)[len(values) // 2]


def run(ctx):
    from benchmarks import common

    shapes = ctx.shapes()
    work = os.path.join(ctx.work_dir, "epoch_end")
    shutil.rmtree(work, ignore_errors=True)
    batch_size = ctx.epoch_end_batch_size
    steps = pipeline.steps_per_epoch(shapes.num_videos(), batch_size)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = common.build_model(shapes.vocabulary.tokens, shapes.image_size)
    model.encoder.set_trainable_blocks(0)
    # pretrain's input: the frozen encoder's cached features
    feature_cache.build_cache(model, shapes.records_dir, os.path.join(work, "features"),
                              ("train",), batch_size=32, image_size=shapes.image_size)
    files = records.list_shards(os.path.join(work, "features"), "train")
    trainer = common.trainer(model, strategy, work, kind="features", batch_size=batch_size)

    def make(per_replica, epoch, context):
        return pipeline.train_dataset(files, "features", shapes.tokenizer, per_replica,
                                      epoch=epoch, input_context=context)

    def now(epoch):
        return trainer.distributed_epoch(make, epoch, steps)

    autotuned = tf.data.Options()
    autotuned.autotune.enabled = True

    def before(epoch):
        return strategy.distribute_datasets_from_function(
            lambda context: make(batch_size, epoch, context).with_options(autotuned).take(steps))

    ways = (("now", now), ("before", before))
    waits = {name: _waits(fn, ctx.epoch_end_epochs, ctx.epoch_end_step_seconds)
             for name, fn in ways}
    # (the first epoch traces and opens the files: left out of the median)
    reads = {name: _input_seconds(fn, ctx.epoch_end_epochs + 1)[1:] for name, fn in ways}
    worst = {name: max(w) for name, w in waits.items()}
    return {
        "title": "epoch end: wait to free the epoch's iterator",
        "a": f"{worst['now']:.2f} s now (worst of {ctx.epoch_end_epochs})",
        "b": f"{worst['before']:.2f} s autotuned, distributed",
        "ratio": worst["before"] / max(worst["now"], 1e-3),
        "target": f"now <= {TARGET} s", "met": worst["now"] <= TARGET,
        "details": {
            "wait_seconds_now": waits["now"],
            "wait_seconds_before": waits["before"],
            "input_seconds_per_epoch_now": _median(reads["now"]),
            "input_seconds_per_epoch_before": _median(reads["before"]),
            "steps_per_epoch": steps, "batch_size": batch_size,
            "step_seconds": ctx.epoch_end_step_seconds,
            "epoch_seconds": steps * ctx.epoch_end_step_seconds,
        },
    }

"""2. Finetune step: the encoder's achieved GFLOP/s vs a tf.matmul peak.
3. tf.data frames/s alone vs the frames/s a finetune step consumes.

Both come from one measured finetune step time, so they are run together.
"""

import os
import shutil
import time

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from benchmarks import common
from etenet_tf.data import pipeline

GFLOPS_TARGET = 0.40
PIPELINE_TARGET = 5.0


def forward_flops_per_frame(backbone, image_size):
    """FLOPs of one frame through the backbone (TF's profiler: 2 per multiply-add)."""
    fn = tf.function(lambda x: backbone(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, image_size, image_size, 3], tf.float32))
    graph = convert_variables_to_constants_v2(fn).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


def pipeline_frames_per_second(shapes, batch_size, epochs=3):
    """The training input pipeline alone: read, parse, JPEG-decode, batch."""
    files = shapes.files()
    per_batch = batch_size * shapes.frames
    for _ in pipeline.train_dataset(files, "frames", shapes.tokenizer, batch_size,
                                        image_size=shapes.image_size).take(1):
        pass  # builds the pipeline's functions once
    frames, start = 0, time.perf_counter()
    for epoch in range(epochs):
        for _ in pipeline.train_dataset(files, "frames", shapes.tokenizer, batch_size,
                                        epoch=epoch, image_size=shapes.image_size):
            frames += per_batch
    return frames / (time.perf_counter() - start)


def run(ctx):
    shapes = ctx.shapes()
    work = os.path.join(ctx.work_dir, "finetune_compute")
    shutil.rmtree(work, ignore_errors=True)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = common.build_model(shapes.vocabulary.tokens, shapes.image_size)
    model.encoder.set_trainable_blocks(-1)
    trainer = common.trainer(model, strategy, work, kind="frames", batch_size=ctx.batch_size,
                             decoder_learning_rate=5e-4, encoder_learning_rate=1e-5)
    batch = next(iter(pipeline.train_dataset(shapes.files(), "frames", shapes.tokenizer,
                                             ctx.batch_size, image_size=shapes.image_size)))
    # one batch held in memory: the step's own speed, without input
    step = common.seconds(lambda: float(trainer.train_step(batch)["loss"]), repeats=5, warmup=2)
    frames_per_step = ctx.batch_size * shapes.frames
    consumed = frames_per_step / step
    flops = forward_flops_per_frame(model.encoder.backbone, shapes.image_size)
    # training = forward + backward (input gradients + weight gradients) ~ 3 forwards
    achieved = 3 * flops * consumed / 1e9
    peak = common.matmul_peak_gflops()
    supplied = pipeline_frames_per_second(shapes, ctx.batch_size)
    shape = {"batch_size": ctx.batch_size, "frames": shapes.frames,
             "image_size": shapes.image_size, "step_seconds": step}
    return [
        {
            "title": "finetune step: encoder GFLOP/s vs tf.matmul peak",
            "a": f"{achieved:.1f} GFLOP/s encoder",
            "b": f"{peak:.1f} GFLOP/s matmul",
            "ratio": achieved / peak, "target": f">= {GFLOPS_TARGET:.0%} of peak",
            "met": achieved / peak >= GFLOPS_TARGET,
            "details": dict(shape, encoder_forward_gflop_per_frame=flops / 1e9,
                            encoder_training_gflop_per_frame=3 * flops / 1e9,
                            encoder_gflops=achieved, matmul_peak_gflops=peak),
        },
        {
            "title": "tf.data frames/s alone vs finetune consumption",
            "a": f"{supplied:.0f} frames/s pipeline",
            "b": f"{consumed:.1f} frames/s finetune",
            "ratio": supplied / consumed, "target": f">= {PIPELINE_TARGET:.0f}x",
            "met": supplied / consumed >= PIPELINE_TARGET,
            "details": dict(shape, pipeline_frames_per_second=supplied,
                            finetune_frames_per_second=consumed),
        },
    ]

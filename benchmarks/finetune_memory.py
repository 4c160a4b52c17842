"""11. Finetune memory: peak memory and step time of an end-to-end step with
and without `--remat`, in float32 and bfloat16.

Each configuration runs in a fresh Python process, because a process's
peak resident memory (`ru_maxrss`) never goes down. That process builds the
captioner (package default decoder sizes, a randomly initialised encoder:
memory and speed do not depend on the weights' values), unfreezes the
whole encoder, builds the `Trainer` with both Adam optimizers, and then
runs finetune steps on random frames at each batch size, smallest first.
The figure is the peak over a step minus the memory before the first step,
which already holds the weights and the Adam state. Two batch sizes give
the memory per video (the slope) and the fixed part (weight gradients, the
traced graph), and from these the largest batch a GPU could hold. That
last figure is an estimate: GPU kernels keep much the same tensors, but
cuDNN workspaces and the allocator's fragmentation are not measured here.
"""

import argparse
import json
import os
import subprocess
import sys
import time

# name: (--remat, --mixed_precision)
CONFIGS = {
    "f32": ("none", "none"),
    "f32_blocks": ("blocks", "none"),
    "f32_planned": ("planned", "none"),
    "bf16": ("none", "bfloat16"),
    "bf16_planned": ("planned", "bfloat16"),
}
MEMORY_TARGET = 0.60  # remat keeps <= 60% of the peak (cuts it by >= 40%)
TIME_TARGET = 1.35  # for <= 35% more step time
TARGETS = f"<= {MEMORY_TARGET:.0%} memory, <= {TIME_TARGET:.0%} time"
SHARE = "- (memory %)"  # no target: the share of float32's memory
GPU_GB = (16, 80)
# CUDA context, cuDNN workspaces and allocator slack a GPU needs besides the
# tensors (an assumption, not a measurement)
GPU_RESERVE_GB = 1.5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _memory_mb():
    """(resident MB now, peak resident MB since the last `_reset_peak`)."""
    status = {}
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            name, _, value = line.partition(":")
            status[name] = value.split()[0] if value.split() else "0"
    return int(status["VmRSS"]) / 1024, int(status["VmHWM"]) / 1024


def _reset_peak():
    """Sets the peak resident memory to the current one (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
        f.write("5")


def worker(settings):
    """One configuration and batch size, in this (fresh) process: a dict."""
    import numpy as np
    import tensorflow as tf

    from benchmarks import common
    from etenet_tf.text import vocabulary as vocab_lib
    from etenet_tf.training import stages

    remat, precision = CONFIGS[settings["config"]]
    stages.set_precision(precision)
    vocabulary = list(vocab_lib.SPECIAL_TOKENS) + [
        f"w{i}" for i in range(settings["vocabulary_size"] - len(vocab_lib.SPECIAL_TOKENS))]
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = common.build_model(vocabulary, settings["image_size"],
                                   num_frames=settings["frames"], encoder=settings["encoder"])
    model.encoder.set_trainable_blocks(-1)
    plan = model.encoder.set_remat(remat)
    batch_size, frames = settings["batch_size"], settings["frames"]
    trainer = common.trainer(model, strategy, settings["work_dir"], kind="frames",
                             batch_size=batch_size, decoder_learning_rate=1e-4,
                             encoder_learning_rate=1e-5)
    rng = np.random.default_rng(0)
    size, length = settings["image_size"], settings["caption_length"]
    tokens = rng.integers(4, len(vocabulary), (batch_size, length + 1)).astype("int32")
    batch = ({"frames": rng.integers(0, 256, (batch_size, frames, size, size, 3), np.uint8),
              "tokens": tokens[:, :-1]}, tokens[:, 1:])
    _reset_peak()
    before, _ = _memory_mb()  # the weights and the Adam state are in already
    start = time.perf_counter()
    float(trainer.train_step(batch)["loss"])  # traces, then runs
    first = time.perf_counter() - start
    times, cpu = [], common.cpu_times()
    for _ in range(settings["repeats"]):
        start = time.perf_counter()
        float(trainer.train_step(batch)["loss"])
        times.append(time.perf_counter() - start)
    _, peak = _memory_mb()
    end = common.cpu_times()
    share = common.cpu_share(cpu, end, sum(times), common.machine()["cores"])
    # CPU seconds per step: what a step costs, less sensitive to neighbours
    share["step_cpu_seconds"] = (end[0] - cpu[0]) / len(times)
    return {"config": settings["config"], "batch_size": batch_size, "remat": remat,
            "mixed_precision": precision, "plan": plan.describe() if plan else None,
            "parameters": int(model.count_params()),
            "rss_before_mb": before, "peak_rss_mb": peak, "peak_minus_before_mb": peak - before,
            "first_step_seconds": first, "step_seconds": sorted(times)[len(times) // 2],
            "images_per_step": batch_size * frames, **share}


def _measure(settings):
    """Runs `worker` in a fresh process; returns its dict."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.finetune_memory",
                           json.dumps(settings)], capture_output=True, text=True, cwd=ROOT,
                          env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{settings['config']} failed (exit {proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def _growth(result):
    """(MB per video, fixed MB) from the smallest and largest batch; (None,
    None) when one batch size was measured."""
    sizes = sorted(int(b) for b in result["batches"])
    if len(sizes) < 2:
        return None, None
    low, high = result["batches"][str(sizes[0])], result["batches"][str(sizes[-1])]
    slope = ((high["peak_minus_before_mb"] - low["peak_minus_before_mb"])
             / (sizes[-1] - sizes[0]))
    return slope, low["peak_minus_before_mb"] - slope * sizes[0]


def _gpu_batches(result):
    """Estimated largest batch on each `GPU_GB` GPU: memory left after the
    reserve, the weights, their gradients and Adam's two slots (16 bytes per
    parameter) and the fixed part, over the measured memory per video."""
    slope, fixed = result["mb_per_video"], result["fixed_mb"]
    if not slope or slope <= 0:
        return None
    state_gb = 16 * result["parameters"] / 1e9
    return {f"{gb} GB": max(0, int(((gb - GPU_RESERVE_GB - state_gb) * 1024 - max(fixed, 0))
                                   / slope))
            for gb in GPU_GB}


def _largest(result):
    return result["batches"][str(max(int(b) for b in result["batches"]))]


def _compare(title, a, b, target, met):
    top_a, top_b = _largest(a), _largest(b)
    memory = top_a["peak_minus_before_mb"] / top_b["peak_minus_before_mb"]
    time_ratio = top_a["step_seconds"] / top_b["step_seconds"]
    cpu_ratio = top_a["step_cpu_seconds"] / top_b["step_cpu_seconds"]
    return {
        "title": title,
        "a": f"{top_a['peak_minus_before_mb'] / 1024:.2f} GB, {top_a['step_seconds']:.1f} s/step",
        "b": f"{top_b['peak_minus_before_mb'] / 1024:.2f} GB, {top_b['step_seconds']:.1f} s/step",
        "ratio": memory, "target": target, "met": met(memory, time_ratio),
        "memory_ratio": memory, "step_time_ratio": time_ratio, "step_cpu_ratio": cpu_ratio,
    }


def run(ctx):
    configs = ctx.memory_configs.split(",")
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise ValueError(f"unknown --memory_configs {', '.join(sorted(unknown))}; choose from "
                         f"{', '.join(CONFIGS)}")
    batch_sizes = sorted(int(b) for b in ctx.memory_batch_sizes.split(","))
    rows = []
    for encoder in ctx.memory_encoders.split(","):
        results = {}
        for config in configs:
            for batch_size in batch_sizes:
                print(f"  finetune_memory: {encoder} {config} batch {batch_size} ...",
                      file=sys.stderr, flush=True)
                measured = _measure({
                    "config": config, "encoder": encoder, "image_size": ctx.memory_image_size,
                    "frames": ctx.memory_frames, "batch_size": batch_size,
                    "vocabulary_size": ctx.vocabulary_size, "caption_length": ctx.max_length,
                    "repeats": ctx.memory_repeats,
                    "work_dir": os.path.join(ctx.work_dir, "finetune_memory", encoder, config,
                                             str(batch_size))})
                result = results.setdefault(config, {
                    k: measured[k] for k in ("remat", "mixed_precision", "plan", "parameters")})
                result.setdefault("batches", {})[str(batch_size)] = {
                    k: v for k, v in measured.items()
                    if k not in ("config", "remat", "mixed_precision", "plan", "parameters")}
        for result in results.values():
            result["mb_per_video"], result["fixed_mb"] = _growth(result)
            result["gpu_batch_estimate"] = _gpu_batches(result)
        base_slope = results.get("f32", {}).get("mb_per_video")
        for result in results.values():
            # what decides the batch a GPU holds: memory per video against float32
            result["mb_per_video_vs_f32"] = (result["mb_per_video"] / base_slope
                                             if base_slope and result["mb_per_video"] else None)
        shape = (f"{ctx.memory_image_size} px, {ctx.memory_frames} frames, batch "
                 f"{batch_sizes[-1]}, {encoder}")
        details = {"encoder": encoder, "image_size": ctx.memory_image_size,
                   "frames": ctx.memory_frames, "batch_sizes": batch_sizes,
                   "gpu_reserve_gb": GPU_RESERVE_GB, "configs": results}
        compared = [(f"f32_{mode}", "f32", f"--remat={mode} vs none", TARGETS)
                    for mode in ("planned", "blocks")] + [
                    ("bf16", "f32", "bfloat16 vs float32", SHARE),
                    ("bf16_planned", "f32", "bfloat16 + --remat=planned vs float32", SHARE)]
        encoder_rows = []
        for a, b, what, target in compared:
            if a in results and b in results:
                row = _compare(f"finetune peak memory, {what} ({shape})", results[a],
                               results[b], target,
                               (lambda m, t: m <= MEMORY_TARGET and t <= TIME_TARGET)
                               if target == TARGETS else (lambda m, t: None))
                encoder_rows.append(row)
        if not encoder_rows:  # nothing to compare: the figures alone
            encoder_rows.append({"title": f"finetune peak memory ({shape})", "a": "-", "b": "-",
                                 "ratio": None, "target": "-", "met": None})
        for row in encoder_rows:
            row["details"] = dict(details, **{k: row.pop(k, None) for k in (
                "memory_ratio", "step_time_ratio", "step_cpu_ratio")})
        rows += encoder_rows
    return rows


def main():
    parser = argparse.ArgumentParser(description="one configuration (used by benchmarks.run)")
    parser.add_argument("settings", help="JSON settings")
    args = parser.parse_args()
    print(json.dumps(worker(json.loads(args.settings))), flush=True)


if __name__ == "__main__":
    main()

"""9. Captioning a library: the caption stage's pipeline vs one video at a
time, vs the model alone, and its peak memory at two library sizes.

Three ways through the same clips, one model with random weights
(throughput does not depend on the weights' values), in this process:

- one at a time: the caption stage before the library work; each video
  is decoded in this process, then captioned alone (batch 1), decoding and
  the model taking turns;
- the pipeline: `generation.library.caption_videos`, the stage's own loop:
  worker processes decode two batches ahead of the model, batches of
  `--library_batch`, JSON Lines written per batch;
- the model alone: the same batches of already-decoded frames, captioned
  back to back (the ceiling of the pipeline);
- and, for the record, the decoding alone (the pipeline's workers, nothing
  captioned). Without a GPU the model and the decoders share the CPU, so
  the pipeline cannot beat them one after the other,
  `1 / (1 / model + 1 / decode)` (in the details).

The compiled caption function is traced before the timings start, and the
three ways take turns in rounds of whole batches (`--library_rounds`), so
a change in the load of a shared machine hits them alike; the 1-minute
load average is recorded with the results. Sizes: the `--library_*`
options of `benchmarks.run`. Peak
memory: `main.py --stage=caption` on libraries of two sizes (copies of
the test clips), each in a fresh process; the figure is the largest
process of the run (the parent, which holds TensorFlow; each worker holds
one video).
"""

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from benchmarks import common, prepare_decode
from etenet_tf import limits
from etenet_tf.data import decode_pool, video_decode
from etenet_tf.generation import BeamSampler, CaptionGenerator
from etenet_tf.generation.library import caption_videos
from etenet_tf.generation.outputs import open_output
from etenet_tf.jobs import ExperimentConfig
from etenet_tf.model.config import ModelConfig
from etenet_tf.run_dir import RunDir
from etenet_tf.text.vocabulary import Vocabulary

TARGET = 0.90  # the pipeline's share of the model-only throughput
RSS_GROWTH = 1.10  # most peak memory growth from the small to the large library
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tokens(ctx):
    return (["<pad>", "<unk>", "<start>", "<end>"]
            + [f"w{i}" for i in range(ctx.vocabulary_size - 4)])


def make_library(directory, count, sources):
    """`count` clips in `directory`: copies of `sources`, cycled."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(count):
        source = sources[i % len(sources)]
        path = os.path.join(directory, f"{i:05d}_{os.path.basename(source)}")
        if not os.path.exists(path):
            shutil.copy(source, path)
        paths.append(path)
    return paths


def save_random_model(model_dir, image_size, frames, tokens):
    """A model directory holding a randomly initialised captioner as its
    best pretrain checkpoint, as `--stage=caption` reads it."""
    run_dir = RunDir(model_dir)
    if os.path.isfile(os.path.join(run_dir.best_dir("pretrain"), "best.json")):
        return run_dir
    config = ModelConfig(encoder="inception_v3", image_size=image_size, num_frames=frames)
    model = common.build_model(tokens, image_size, num_frames=frames)  # built: every weight
    run_dir.write_model(config, Vocabulary(tokens))
    best = run_dir.best_dir("pretrain")
    os.makedirs(best, exist_ok=True)
    tf.train.Checkpoint(model=model).write(os.path.join(best, "ckpt-0"))
    with open(os.path.join(best, "best.json"), "w", encoding="utf-8") as f:
        json.dump({"value": 0.0, "step": 0, "metric": "CIDEr"}, f)
    return run_dir


def _sources(ctx):
    """Clips that decode: the shared real clips if present, else the test clips."""
    paths, source = prepare_decode.clips(ctx)
    return [p for p in paths if prepare_decode._decodes(p)], source


def _one_at_a_time(generator, paths, frames, size):
    for path in paths:
        try:
            clip = video_decode.decode_video(path, frames, size)
        except video_decode.VideoDecodeError:
            continue
        generator(clip[None]).texts.numpy()


def _decode_only(paths, frames, size, workers, batch):
    """The pipeline's decoding alone: the same workers, nothing captioned."""
    jobs = ((p, frames, size, None, limits.MAX_FRAME_PIXELS) for p in paths)
    with decode_pool.OrderedDecoder(video_decode.decode_job, jobs, workers=workers,
                                    ahead=max(2 * batch, workers)) as decoder:
        for _ in decoder:
            pass


def _pipeline(generator, paths, config, frames, size, out_dir):
    output_path = os.path.join(out_dir, f"captions-{time.time_ns()}.jsonl")
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), \
            contextlib.redirect_stderr(devnull), open_output(output_path) as output:
        caption_videos(config, paths, spec={"num_frames": frames, "image_size": size},
                       make_generator=lambda: generator, output=output)
    with open(output_path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def _peak_rss_mb(model_dir, library, work_dir, batch, workers):
    """Peak RSS (MB) of the largest process of a `main.py --stage=caption` run."""
    output = os.path.join(work_dir, f"rss-{os.path.basename(library)}.jsonl")
    if os.path.exists(output):
        os.remove(output)
    launcher = ("import resource, subprocess, sys\n"
                "result = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
                "stderr=subprocess.PIPE, text=True)\n"
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
                "result.returncode, repr(result.stderr[-2000:]))\n")
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", launcher, sys.executable, os.path.join(ROOT, "main.py"),
         "--stage=caption", f"--model_dir={model_dir}", f"--videos={library}",
         f"--output={output}", f"--caption_batch_size={batch}", f"--workers={workers}",
         "--noprogress", "--beam_size=1", "--max_decode_length=5"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), check=True)
    seconds = time.perf_counter() - start
    kilobytes, code, stderr = out.stdout.split(" ", 2)
    if int(code) != 0:
        raise RuntimeError(f"the caption run failed: {stderr}")
    with open(output, encoding="utf-8") as f:
        captioned = sum(1 for _ in f)
    return int(kilobytes) / 1024, captioned, seconds


def _rounds(paths, batch, rounds):
    """`paths` in `rounds` runs of whole batches (as equal as can be)."""
    batches = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    rounds = max(1, min(rounds, len(batches)))
    return [sum(batches[r::rounds], []) for r in range(rounds)]


def run(ctx):
    size, frames, batch = ctx.library_image_size, ctx.library_frames, ctx.library_batch
    workers = ctx.library_workers or os.cpu_count() or 1
    tokens = _tokens(ctx)
    sources, source_dir = _sources(ctx)
    work = os.path.join(ctx.work_dir, "caption_library")
    paths = make_library(os.path.join(work, "library"), ctx.library_clips, sources)
    model = common.build_model(tokens, size, num_frames=frames)
    sampler = BeamSampler(ctx.beam_size, 0.6)
    config = ExperimentConfig.from_flat(dict(caption_batch_size=batch, workers=workers,
                                             progress=False))
    one = CaptionGenerator(model, sampler, ctx.max_length)
    batched = CaptionGenerator(model, sampler, ctx.max_length)
    clip = video_decode.decode_video(paths[0], frames, size)
    one(clip[None]).texts.numpy()  # traced before the timings
    decoded = np.stack([video_decode.decode_video(p, frames, size)
                        for p in (paths * batch)[:batch]])
    batched(decoded).texts.numpy()

    # The three ways take turns, a round of whole batches each, so that a
    # change in the machine's load (a shared machine) hits all three alike.
    seconds = {"one": 0.0, "model": 0.0, "decode": 0.0, "pipeline": 0.0}
    model_videos = written = 0
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(dir=ctx.work_dir) as out_dir:
        for number, chunk in enumerate(_rounds(paths, batch, ctx.library_rounds)):
            ways = list(seconds)
            for way in ways[number % len(ways):] + ways[:number % len(ways)]:
                start = time.perf_counter()
                if way == "one":
                    _one_at_a_time(one, chunk, frames, size)
                elif way == "model":
                    calls = -(-len(chunk) // batch)  # the pipeline pads its last batch too
                    for _ in range(calls):
                        batched(decoded).texts.numpy()
                    model_videos += calls * batch
                elif way == "decode":
                    _decode_only(chunk, frames, size, workers, batch)
                else:
                    written += _pipeline(batched, chunk, config, frames, size, out_dir)
                seconds[way] += time.perf_counter() - start
            load.append(os.getloadavg()[0])
    new_rate, old_rate = len(paths) / seconds["pipeline"], len(paths) / seconds["one"]
    model_rate = model_videos / seconds["model"]
    decode_rate = len(paths) / seconds["decode"]
    share = new_rate / model_rate
    # where the model and the decoders share the same cores (no GPU), they
    # cannot overlap: the best the pipeline can do is one after the other
    cpu_bound = 1 / (1 / model_rate + 1 / decode_rate)
    setting = (f"{len(paths)} clips, {frames} frames of {size} px, beam {ctx.beam_size}, "
               f"batch {batch}, {workers} decoding processes")
    details = {"clips": len(paths), "captioned": written, "source": source_dir,
               "seconds": seconds, "model_only_videos": model_videos,
               "rounds": ctx.library_rounds, "load_average_1min": load,
               "cpus": os.cpu_count(), "videos_per_second": {
                   "pipeline": new_rate, "one_at_a_time": old_rate, "model_only": model_rate,
                   "decode_only": decode_rate, "model_then_decode_on_shared_cores": cpu_bound},
               "pipeline_share_of_model_only": share,
               "pipeline_share_of_shared_cores_bound": new_rate / cpu_bound}
    results = [
        {
            "title": f"caption a library, pipeline vs one at a time ({setting})",
            "a": f"{new_rate:.2f} videos/s", "b": f"{old_rate:.2f} videos/s one at a time",
            "ratio": new_rate / old_rate, "target": "-", "met": None, "details": details,
        },
        {
            "title": f"caption a library, pipeline vs the model alone on decoded frames "
                     f"({setting})",
            "a": f"{new_rate:.2f} videos/s", "b": f"{model_rate:.2f} videos/s model only",
            "ratio": share, "target": f">= {TARGET:.0%}", "met": share >= TARGET,
            "details": details,
        },
    ]
    sizes = [int(n) for n in ctx.library_rss_clips.split(",") if n]
    if len(sizes) == 2:
        rss_size, rss_frames = ctx.library_rss_image_size, ctx.library_rss_frames
        model_dir = os.path.join(work, f"model_{rss_size}_{rss_frames}")
        save_random_model(model_dir, rss_size, rss_frames, tokens)
        test_clips = sorted(glob.glob(os.path.join(ROOT, "tests", "data", "*.mp4")))
        peaks = {}
        for count in sizes:
            library = os.path.join(work, f"rss_library_{count}")
            make_library(library, count, test_clips)
            peaks[count] = _peak_rss_mb(model_dir, library, work, batch, workers)
        (small, small_n, small_s), (large, large_n, large_s) = peaks[sizes[0]], peaks[sizes[1]]
        growth = large / small
        results.append({
            "title": f"caption a library, peak RSS at {sizes[0]} vs {sizes[1]} clips "
                     f"({rss_frames} frames of {rss_size} px, batch {batch}, greedy)",
            "a": f"{large:.0f} MB at {sizes[1]} clips", "b": f"{small:.0f} MB at {sizes[0]}",
            "ratio": growth, "target": f"<= {RSS_GROWTH:.2f}x", "met": growth <= RSS_GROWTH,
            "details": {"peak_rss_mb": {str(sizes[0]): small, str(sizes[1]): large},
                        "captioned": {str(sizes[0]): small_n, str(sizes[1]): large_n},
                        "seconds": {str(sizes[0]): small_s, str(sizes[1]): large_s}},
        })
    return results

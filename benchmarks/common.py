"""What the benchmarks share: timing, machine facts, a prepared dataset and
the model they train."""

import os
import platform
import statistics
import time

import keras
import tensorflow as tf

from etenet_tf import jobs
from etenet_tf.data import prepare as prepare_lib
from etenet_tf.data import records
from etenet_tf.model.config import ModelConfig, build_captioner
from etenet_tf.run_dir import RunDir
from etenet_tf.text import tokenizer as tokenizer_lib
from etenet_tf.training import stages
from etenet_tf.training.loop import Trainer
from etenet_tf.training.objectives import TeacherForcing


def seconds(fn, repeats=3, warmup=1):
    """Median wall time of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine():
    """Facts about where the numbers come from."""
    cpu = platform.processor() or "unknown"
    if os.path.isfile("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "cpu": cpu,
        "cores": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count()),
        "gpus": [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                 for g in gpus],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def cpu_times():
    """(CPU seconds of this process and of its children that ended, the
    machine's steal jiffies or None)."""
    import resource
    self_, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                            resource.RUSAGE_CHILDREN))
    steal = None
    if os.path.isfile("/proc/stat"):
        with open("/proc/stat", encoding="utf-8") as f:
            fields = f.readline().split()
        steal = int(fields[8]) if len(fields) > 8 else None
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime, steal


def cpu_share(start, end, wall_seconds, cores):
    """How much of the machine the run got: CPU time used / (wall x cores),
    and the share of time the hypervisor gave to others (steal)."""
    used = (end[0] - start[0]) / (wall_seconds * cores)
    steal = None
    if start[1] is not None and end[1] is not None:
        steal = (end[1] - start[1]) / os.sysconf("SC_CLK_TCK") / (wall_seconds * cores)
    return {"process_cpu_utilisation": used, "steal": steal}


def matmul_peak_gflops(n=2048, iterations=20):
    """float32 tf.matmul throughput: the machine's practical peak."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])

    @tf.function
    def run():
        c = a
        for _ in range(iterations):
            c = tf.matmul(c, b) * 1e-3  # keep values finite
        return tf.reduce_sum(c)

    elapsed = seconds(lambda: run().numpy(), repeats=3, warmup=1)
    return 2 * n ** 3 * iterations / elapsed / 1e9


class ShapesData:
    """A prepared shapes dataset (built once under `work_dir`).

    Args:
        work_dir: where records go.
        frames: frames per video.
        image_size: frame side.
        train_per_combination: train clips per (colour, shape, direction).
    """

    def __init__(self, work_dir, frames, image_size, train_per_combination):
        name = f"shapes_f{frames}_s{image_size}_n{train_per_combination}"
        self.cfg = jobs.ExperimentConfig.from_flat(dict(
            dataset="shapes", records_dir=os.path.join(work_dir, name, "records"),
            frames=frames, image_size=image_size, min_word_count=1,
            shapes_train_per_combination=train_per_combination, videos_per_shard=32,
            stage="prepare",
        ))
        self.records_dir = self.cfg.data.records_dir
        if not os.path.isfile(os.path.join(self.records_dir, prepare_lib.DATASET_FILE)):
            jobs.run(self.cfg)
        prepared = stages.load_prepared(self.cfg.data)
        self.info, self.vocabulary = prepared.info, prepared.vocabulary
        self.tokenizer = tokenizer_lib.CaptionTokenizer(self.vocabulary, prepared.max_length)
        self.frames, self.image_size = frames, image_size

    def files(self, split="train"):
        return records.list_shards(self.records_dir, split)

    def num_videos(self, split="train"):
        return self.info["splits"][split]["videos"]


def trainer(model, strategy, work_dir, *, kind, batch_size, decoder_learning_rate=1e-3,
            encoder_learning_rate=None, objective=None):
    """A training-loop `Trainer` (teacher forcing unless `objective` is
    given) writing under `work_dir`."""
    return Trainer(model, strategy, RunDir(work_dir), kind,
                   objective=objective or TeacherForcing(),
                   kind=kind, global_batch_size=batch_size,
                   decoder_learning_rate=decoder_learning_rate,
                   encoder_learning_rate=encoder_learning_rate, verbose=False)


def build_model(vocabulary_tokens, image_size, num_frames=8, encoder="inception_v3", **options):
    """The captioner with the package's default layer sizes (or `options`,
    any `ModelConfig` field) and a randomly initialised encoder, InceptionV3
    unless told (ImageNet weights cannot be fetched here; throughput and
    memory do not depend on the weights' values)."""
    keras.utils.set_random_seed(0)
    config = ModelConfig(encoder=encoder, image_size=image_size, num_frames=num_frames,
                         **options)
    return build_captioner(config, vocabulary_tokens, encoder_weights=None)

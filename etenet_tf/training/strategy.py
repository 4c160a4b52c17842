"""tf.distribute strategy selection.

Training always goes through the custom loop in `loop.py` (`strategy.run`),
never `model.fit`: Keras 3 `fit` fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585), and one loop for every strategy keeps a single
code path.
"""

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def make_strategy(name="auto"):
    """Builds a strategy.

    Args:
        name: `auto` (TF_CONFIG with several workers -> multi_worker; more
            than one GPU -> mirrored; else one_device), `one_device`,
            `mirrored` (all local GPUs, or all logical CPUs when there is no
            GPU) or `multi_worker` (from TF_CONFIG).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    # MultiWorkerMirroredStrategy must exist before anything initialises the
    # TF runtime (listing devices does), so decide on it first.
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if name == "auto" and sum(len(v) for v in cluster.values()) > 1:
        name = "multi_worker"
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one_device"
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def is_chief(strategy):
    """True on the worker that writes checkpoints, summaries and files."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


def num_workers(strategy):
    """Worker processes taking part in training (1 without a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))


def barrier(strategy):
    """Blocks until every worker gets here (a no-op with one worker).

    The chief writes shared files (best.json) that the other workers read
    next; a collective all-reduce makes them wait for it.
    """
    if num_workers(strategy) < 2:
        return

    @tf.function
    def sync():
        ones = strategy.run(lambda: tf.constant(1.0))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)

    sync()


def worker_dir(directory, strategy):
    """Where this worker writes: `directory` on the chief, a private temp
    directory elsewhere (all workers must take part in every save)."""
    if is_chief(strategy):
        return directory
    resolver = strategy.cluster_resolver
    return os.path.join(directory, f".worker_{resolver.task_type}_{resolver.task_id}")

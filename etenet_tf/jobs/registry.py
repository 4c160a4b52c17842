"""The stages of `main.py`, in pipeline order: the one list the command
line (`--stage` choices), `all`, `evaluate` and `caption` read.

Adding a stage is one module in `etenet_tf.jobs` with `run(config)` and
one line here; a training stage (`trains=True`) gets `<model_dir>/<name>/`
with its best checkpoint, which later stages can pick with `--checkpoint`.
"""

import dataclasses
import importlib

from etenet_tf.errors import UsageError
from etenet_tf.run_dir import NoCheckpointError


@dataclasses.dataclass(frozen=True)
class Job:
    """A stage of `main.py`.

    Args:
        name: the `--stage` value.
        module: module under `etenet_tf.jobs` with `run(config)`.
        help: one line for `--help` and the README.
        trains: a training stage (writes a best checkpoint).
    """

    name: str
    module: str
    help: str
    trains: bool = False

    def run(self, config):
        """Runs the stage with an `ExperimentConfig`; returns its result."""
        return importlib.import_module(f"etenet_tf.jobs.{self.module}").run(config)


JOBS = {job.name: job for job in [
    Job("prepare", "prepare", "decode videos into sharded TFRecords, vocabulary and reports"),
    Job("pretrain", "pretrain", "encoder frozen (cached features), the decoder learns",
        trains=True),
    Job("finetune", "finetune", "the whole network end to end from the best pretrain weights",
        trains=True),
    Job("scst", "scst", "self-critical training on CIDEr-D from the best finetune (or "
        "pretrain) weights", trains=True),
    Job("evaluate", "evaluate", "caption a split and score it (caption metrics, attributes)"),
    Job("caption", "caption", "caption your own videos"),
    Job("export", "export", "a SavedModel for TF Serving"),
    Job("demo", "demo", "a local web page: upload a video, see its captions and attention"),
    Job("all", "main_job", "prepare, the training stages, evaluate, export"),
]}
STAGES = tuple(JOBS)
TRAINING_STAGES = tuple(name for name, job in JOBS.items() if job.trains)


def run(config):
    """Runs `config.stage`."""
    if config.stage not in JOBS:
        raise UsageError(f"--stage is required: one of {', '.join(STAGES)}" if not config.stage
                         else f"--stage={config.stage} is unknown; choose one of "
                              f"{', '.join(STAGES)}")
    return JOBS[config.stage].run(config)


def checkpoint_stages(checkpoint, run_dir, *, many=False):
    """The training stages whose best checkpoints `--checkpoint` picks.

    Args:
        checkpoint: `auto` (the last trained stage), a training stage, or
            `all` / `both` (every trained stage; only with `many`).
        run_dir: the `RunDir`.
        many: whether several stages may be picked (evaluate).

    Returns:
        A non-empty list of stage names, in training order.
    """
    trained = run_dir.trained_stages(TRAINING_STAGES)
    if checkpoint in ("all", "both") and many:
        picked = trained
    elif checkpoint in ("auto", "all", "both"):
        picked = trained[-1:]
    elif checkpoint in TRAINING_STAGES:
        return [checkpoint]
    else:
        raise UsageError(f"--checkpoint={checkpoint} is unknown; choose auto, "
                         f"{', '.join(TRAINING_STAGES)}{' or all' if many else ''}")
    if not picked:
        raise NoCheckpointError(f"no trained checkpoint in {run_dir.path}: run --stage="
                                f"{TRAINING_STAGES[0]} with --model_dir={run_dir.path} first")
    return picked

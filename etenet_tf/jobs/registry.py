"""The stages of `main.py`, in pipeline order: the one list the command
line (`--stage` choices), `all`, `evaluate` and `caption` read.

The training stages come from the stage registry
(`etenet_tf.training.stages.STAGES`): registering a `StageSpec` there is
all it takes for `--stage=<name>` (run by the one generic job,
`jobs.train`), `--stage=all` and `--checkpoint=<name>`. Another kind of
stage is one module in `etenet_tf.jobs` with `run(config)` and one line
here. A training stage gets `<model_dir>/<name>/` with its best checkpoint,
which later stages can pick with `--checkpoint`.

Before a stage that starts from a stored model runs, the model flags the
user gave are compared with that model (`jobs.model_flags`).
"""

import dataclasses
import importlib

from etenet_tf.errors import UsageError
from etenet_tf.export import package
from etenet_tf.jobs import model_flags
from etenet_tf.run_dir import NoCheckpointError, RunDir
from etenet_tf.training.stages import STAGES as TRAINING_SPECS


@dataclasses.dataclass(frozen=True)
class Job:
    """A stage of `main.py`.

    Args:
        name: the `--stage` value.
        module: module under `etenet_tf.jobs` with `run(config)`.
        help: one line for `--help` and the README.
        trains: a training stage (writes a best checkpoint).
        stored_model: uses the model stored in `--model_dir` when there is
            one: the model flags given are compared with it first.
        reads_records: reads `--records_dir` (`--frames` / `--image_size`
            are compared with the records when no model is stored yet).
    """

    name: str
    module: str
    help: str
    trains: bool = False
    stored_model: bool = False
    reads_records: bool = False

    def run(self, config):
        """Runs the stage with an `ExperimentConfig`; returns its result."""
        if self.trains and config.source.model:  # start from a model package
            if self.name == "pretrain":
                raise UsageError("--model starts finetune or scst from a model package; "
                                 "pretrain trains a new model: drop --model")
            package.seed_model_dir(package.resolve(config.source.model), config.model_dir)
        if self.stored_model and not config.beam.saved_model:  # (caption from a SavedModel)
            stored = config.model_dir if self.trains else package.model_directory(config)
            model_flags.check(config, RunDir(stored), records=self.reads_records)
        return importlib.import_module(f"etenet_tf.jobs.{self.module}").run(config)


JOBS = {job.name: job for job in [
    Job("prepare", "prepare", "decode videos into sharded TFRecords, vocabulary and reports"),
    *(Job(spec.name, "train", spec.help, trains=True, stored_model=True, reads_records=True)
      for spec in TRAINING_SPECS.values()),
    Job("evaluate", "evaluate", "caption a split and score it (caption metrics, attributes)",
        stored_model=True, reads_records=True),
    Job("caption", "caption", "caption your own videos", stored_model=True),
    Job("export", "export", "a SavedModel for TF Serving", stored_model=True),
    Job("demo", "demo", "a local web page: upload a video, see its captions and attention",
        stored_model=True),
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

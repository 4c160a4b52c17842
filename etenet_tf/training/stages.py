"""The training stages as data: a `StageSpec` per stage, run by `run_stage`.

A stage says what it starts from (a new model, or the best checkpoint of
an earlier stage), what it trains on (the frozen encoder's cached
features, or frames), which parts train at which learning rate, its
objective and its epochs flag; `run_stage` does the rest the same way for
every stage: the records and checks, the lock, the model and its restored
weights, the feature cache, the resume checkpoint, the resolved
configuration (`<model_dir>/<stage>/config.json`), training and
validation. `register_stage` adds a spec to `STAGES`, in pipeline order;
the command line's `--stage` choices, `--stage=all`, `--checkpoint` and
the jobs are made from it (docs/stages.md: how to add a stage).

The three stages:

pretrain: a new model, encoder frozen. Its features are cached once
(`feature_cache`) and the decoder trains on them. A randomly initialised
encoder first gets its BatchNorm statistics from training frames
(`calibrate`), since none of its weights will be trained in this stage.

finetune: starts from the best pretrain checkpoint, unfreezes the encoder
(all of it, or its top N blocks) with its own, lower learning rate and
trains the whole network end to end on frames, optionally recomputing the
encoder's activations in the backward pass (`--remat`) to fit in memory.

scst: self-critical sequence training on CIDEr-D (`objectives.SelfCritical`)
from the best finetune checkpoint (or pretrain's, see `--scst_from`), with
the encoder frozen and its features cached once: sampling K captions per
clip is the expensive part, and a frozen encoder makes it the only one.
After pretrain this is the cheap path of large datasets (the pretrain
feature cache is reused); after finetune the finetuned encoder's features
are cached under `<model_dir>/scst/features`.

They write into a `RunDir`: pretrain records the model (`model_config.json`
and `vocab.txt`), so later stages rebuild exactly the same network. A
stage holds `<model_dir>/<stage>/.lock` while it runs (the chief only,
with several workers): a second run of the same stage on the same model
directory refuses with one line naming the first one's pid, instead of
resuming from its checkpoints mid-run. A damaged record shard met while
training stops the run with an error that names it and says how to
rewrite it.
"""

import contextlib
import dataclasses
import hashlib
import os
from typing import Callable, Optional, Union

import keras

import etenet_tf
from etenet_tf import files
from etenet_tf.data import attributes as attributes_data
from etenet_tf.data import pipeline, records
from etenet_tf.data import prepare as prepare_lib
from etenet_tf.errors import MissingInputError, UsageError
from etenet_tf.evaluation import validation
from etenet_tf.model.config import build_captioner
from etenet_tf.run_dir import NoCheckpointError
from etenet_tf.text import tokenizer as tokenizer_lib
from etenet_tf.text import vocabulary as vocab_lib
from etenet_tf.training import feature_cache, loop
from etenet_tf.training import strategy as strategy_lib
from etenet_tf.training.config import PRECISIONS, TrainingConfig
from etenet_tf.training.objectives import TeacherForcing

# the resolved configuration of a stage's last run, in its directory
CONFIG_FILE = "config.json"

# a spec value: a constant, the name of a `TrainingConfig` field, or
# callable(training) -> the value
Setting = Union[int, float, str, Callable]


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """A training stage, as data.

    Args:
        name: the `--stage` value and the stage's directory in `--model_dir`.
        help: one line for `--help`.
        objective: callable(training, prepared) -> the `objectives.Objective`.
        start: where the weights come from: None builds a new model (and
            records it in `--model_dir`); a stage name restores that stage's
            best checkpoint; callable(run, training) -> a stage name picks
            one at run time (scst's `--scst_from=auto`).
        inputs: `"features"`: the frozen encoder's features, cached once
            (the encoder must not train); `"frames"`: the records' frames.
        encoder_blocks: encoder blocks that train (0: frozen, -1: all, N:
            the top N): a `Setting`.
        decoder_learning_rate: of the decoder and the spatio-temporal
            context: a `Setting`.
        encoder_learning_rate: of the encoder when it trains: a `Setting`.
        epochs: the `TrainingConfig` field holding the stage's epochs
            (default `<name>_epochs`; 0 leaves the stage out of
            `--stage=all`).
        setup: optional callable(model, training) after the weights are
            restored, before the trainer is made (finetune: `--remat`).
        warm_up: optional callable(trainer, training, prepared) after the
            trainer restored its resume checkpoint, before the feature
            cache is built (pretrain: BatchNorm calibration of a fresh run).
    """

    name: str
    help: str
    objective: Callable
    start: Union[None, str, Callable] = None
    inputs: str = "frames"
    encoder_blocks: Setting = 0
    decoder_learning_rate: Setting = "learning_rate"
    encoder_learning_rate: Setting = "encoder_learning_rate"
    epochs: str = ""
    setup: Optional[Callable] = None
    warm_up: Optional[Callable] = None

    def __post_init__(self):
        if not self.epochs:
            object.__setattr__(self, "epochs", f"{self.name}_epochs")
        if self.inputs not in ("features", "frames"):
            raise ValueError(f"stage {self.name}: inputs must be 'features' or 'frames', "
                             f"not {self.inputs!r}")
        fields = {f.name for f in dataclasses.fields(TrainingConfig)}
        if self.epochs not in fields:
            raise ValueError(f"stage {self.name}: TrainingConfig has no {self.epochs} field "
                             "(add it with option(), low=0)")
        if self.inputs == "features" and isinstance(self.encoder_blocks, int) \
                and self.encoder_blocks:
            raise ValueError(f"stage {self.name}: cached features need a frozen encoder "
                             "(encoder_blocks=0)")

    def value(self, setting, training):
        """A `Setting` of this spec for `training`."""
        value = getattr(self, setting)
        if callable(value):
            return value(training)
        if isinstance(value, str):
            return getattr(training, value)
        return value

    def num_epochs(self, training):
        return getattr(training, self.epochs)

    def start_stage(self, run, training):
        """The stage whose best checkpoint this one starts from (None: a new
        model).

        Raises:
            NoCheckpointError: that stage has no best checkpoint yet.
        """
        start = self.start(run, training) if callable(self.start) else self.start
        if start is not None and run.read_best(start) is None:
            raise NoCheckpointError(
                f"{self.name} starts from the best {start} checkpoint, but {run.best_dir(start)} "
                f"has none: run --stage={start} with --model_dir={run.path} first")
        return start


# the training stages, in pipeline order (`register_stage`)
STAGES = {}


def register_stage(spec):
    """Adds a training stage: `--stage=<name>` runs it, `--stage=all` runs
    it after the stages registered before it, `--checkpoint` can pick it.
    Returns the spec."""
    if spec.name in STAGES:
        raise ValueError(f"a training stage {spec.name!r} is registered already")
    STAGES[spec.name] = spec
    return spec


@dataclasses.dataclass
class Prepared:
    """What a training stage reads from `--records_dir`.

    Args:
        records_dir: the directory.
        info: its `dataset.json`.
        vocabulary: its `Vocabulary`.
        max_length: training tokens per caption.
        attributes: `(truth, spec)` of its clips, or `(None, None)`.
    """

    records_dir: str
    info: dict
    vocabulary: vocab_lib.Vocabulary
    max_length: int
    attributes: tuple

    @property
    def train_videos(self):
        return self.info["splits"].get("train", {}).get("videos", 0)


def load_prepared(data):
    """The prepared records of a `DataConfig`; a clear error when prepare
    has not run or the train or val split is missing."""
    info = prepare_lib.load_dataset_info(data.records_dir)
    vocabulary = vocab_lib.Vocabulary.load(os.path.join(data.records_dir, info["vocabulary"]))
    for split in ("train", "val"):
        if not records.list_shards(data.records_dir, split):
            raise MissingInputError(
                f"no {split} records in {data.records_dir}: training needs train and val videos")
    return Prepared(data.records_dir, info, vocabulary,
                    data.max_caption_length or info["max_caption_length"],
                    attributes_data.load(data.records_dir))


def set_precision(mode):
    """`--mixed_precision` -> the Keras global dtype policy."""
    keras.config.set_dtype_policy(PRECISIONS[mode])


def check_best_metric(training, prepared):
    """`--best_metric` must be a score that validation computes on these
    records: a caption metric, or `acc_*` when the clips have attributes."""
    known = validation.known_metrics(prepared.attributes[1])
    if training.best_metric not in known:
        raise UsageError(f"--best_metric={training.best_metric} is not computed in validation "
                         f"on {prepared.records_dir}; choose one of {', '.join(known)}")


def check_batch(training, prepared, strategy):
    """Refuses, before any work, a batch the replicas cannot share equally
    (tf.distribute splits the global batch evenly) or that the training
    split cannot fill (an epoch would train zero steps)."""
    videos = prepared.train_videos
    workers = strategy_lib.num_workers(strategy)
    replicas = strategy.num_replicas_in_sync
    if training.batch_size % replicas:
        lower = max(training.batch_size // replicas, 1) * replicas
        raise UsageError(
            f"--batch_size={training.batch_size} cannot be split over the {replicas} replicas "
            f"of --strategy={training.strategy}: use a multiple of {replicas} (e.g. --batch_size="
            f"{lower}, with --gradient_accumulation_steps to keep the batch per update)")
    if pipeline.steps_per_epoch(videos // workers, training.batch_size // workers) < 1:
        raise loop.TrainingInputError(
            f"--batch_size={training.batch_size} is larger than the {videos} training videos "
            f"in {prepared.records_dir}{f' split over {workers} workers' if workers > 1 else ''},"
            f" so an epoch would train zero steps; use --batch_size="
            f"{max(videos // workers, 1) * workers} or less")


def stage_lock(run, strategy, stage):
    """Checks that `--model_dir` is writable and holds the stage's lock
    (the chief only: other workers write nothing there)."""
    if not strategy_lib.is_chief(strategy):
        return contextlib.nullcontext()
    files.ensure_directory(run.path, "model_dir")
    return files.exclusive_lock(run.stage_dir(stage), f"--stage={stage}")


def reading_records(run, prepared):
    """Context manager: a damaged record or feature-cache shard read inside
    it becomes a `records.CorruptRecordsError` naming the shard and the fix."""
    return records.reporting_corruption(
        (prepared.records_dir, f"re-run --stage=prepare with the same flags (--records_dir="
                               f"{prepared.records_dir}): it checks every shard and writes "
                               "damaged ones again"),
        (run.features_dir, "re-run the same command: pretrain checks its feature cache and "
                           "computes damaged shards again"),
    )


def records_model_config(model_config, prepared):
    """`model_config` with the frame size and count of the records."""
    return dataclasses.replace(model_config, image_size=prepared.info["image_size"],
                               num_frames=prepared.info["num_frames"])


def _stage_model(run, model_config, prepared, training, strategy):
    """Builds (pretrain) or re-creates (later stages) the model, for the
    frame size and count of the records."""
    config = records_model_config(model_config, prepared)
    config.validate()  # (after the strategy exists: this may build a backbone)
    run.check_compatible(config, prepared.vocabulary)
    keras.utils.set_random_seed(training.seed)  # same initial weights on every run and worker
    with strategy.scope():
        model = build_captioner(config, prepared.vocabulary.tokens, training.encoder_weights)
    if strategy_lib.is_chief(strategy):
        run.write_model(config, prepared.vocabulary)
    return model


def calibrate(trainer, training, prepared):
    """pretrain's warm-up: a fresh run (not a resumed one) of a randomly
    initialised encoder first estimates its BatchNorm statistics from
    training frames (`--calibrate_batchnorm`), since none of its weights
    will train in this stage."""
    enabled = training.calibrate_batchnorm == "true" or (
        training.calibrate_batchnorm == "auto"
        and str(training.encoder_weights).lower() == "none")
    if trainer.resumed_from is not None or not enabled:
        return
    model = trainer.model
    ds = pipeline.eval_dataset(records.list_shards(prepared.records_dir, "train"), "frames",
                               training.calibration_batch_size,
                               image_size=prepared.info["image_size"])
    used = model.encoder.calibrate_batchnorm(
        b["frames"] for b in ds.take(training.calibration_batches))
    print(f"calibrated encoder BatchNorm statistics on {used} batches of training frames",
          flush=True)


def make_trainer(run, stage, model, strategy, training, prepared, *, objective, kind,
                 decoder_learning_rate, encoder_learning_rate=None, epochs=None):
    """A `loop.Trainer` for one stage, with the stage's epochs and schedule
    (`epochs`: default `training.epochs(stage)`)."""
    epochs = training.epochs(stage) if epochs is None else epochs
    decay_steps = 0
    if training.lr_schedule == "cosine":
        steps = pipeline.steps_per_epoch(prepared.train_videos, training.batch_size)
        decay_steps = max(1, steps * epochs // training.gradient_accumulation_steps)
    return loop.Trainer(
        model, strategy, run, stage, objective=objective, kind=kind,
        global_batch_size=training.batch_size, decoder_learning_rate=decoder_learning_rate,
        encoder_learning_rate=encoder_learning_rate, clip_norm=training.clip_norm,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        checkpoint_every_steps=training.checkpoint_every_steps, decay_steps=decay_steps,
    )


def fit_stage(trainer, training, prepared, data_dir, epochs=None):
    """Runs `trainer.fit` on the train split of `data_dir` (frame records or
    the feature cache), validating on its val split (`evaluation.validation`)."""
    kind = trainer.kind
    image_size = prepared.info["image_size"] if kind == "frames" else None
    tokenizer = tokenizer_lib.CaptionTokenizer(prepared.vocabulary, prepared.max_length)
    train_files = records.list_shards(data_dir, "train")
    val = pipeline.eval_dataset(records.list_shards(data_dir, "val"), kind,
                                training.eval_batch_size, image_size=image_size)
    validate = validation.make_validator(
        trainer.model, val, kind, max_length=prepared.max_length - 1,
        preview=validation.preview_clips(prepared.records_dir, prepared.info["image_size"]),
        attributes=prepared.attributes)
    return trainer.fit(
        lambda bs, epoch, ctx: trainer.objective.dataset(
            train_files, kind, tokenizer, bs, epoch=epoch, seed=training.seed,
            image_size=image_size, input_context=ctx),
        num_videos=prepared.train_videos,
        epochs=training.epochs(trainer.stage) if epochs is None else epochs,
        validate=validate, best_metric=training.best_metric,
    )


def _start(data, training):
    """What every stage does first: the records, checks, precision, strategy
    (before anything starts the TF runtime, which MultiWorkerMirroredStrategy
    must configure)."""
    prepared = load_prepared(data)
    check_best_metric(training, prepared)
    set_precision(training.mixed_precision)
    strategy = strategy_lib.make_strategy(training.strategy)
    check_batch(training, prepared, strategy)
    return prepared, strategy


def feature_cache_dir(run, spec, start):
    """Where a features stage caches its encoder's features: pretrain's
    cache (`<model_dir>/features`) while the encoder is still the one a new
    model started with (every stage since trained on features, from a fixed
    start), else the stage's own (`<model_dir>/<stage>/features`)."""
    origin = start
    while origin is not None and origin in STAGES and STAGES[origin].inputs == "features" \
            and not callable(STAGES[origin].start):
        origin = STAGES[origin].start
    return run.features_dir if origin is None else os.path.join(run.stage_dir(spec.name),
                                                                 "features")


def config_path(run, stage):
    """`<model_dir>/<stage>/config.json`: the stage's resolved configuration."""
    return os.path.join(run.stage_dir(stage), CONFIG_FILE)


def config_reference(run, stage):
    """`{"stage", "path", "sha256"}` naming the configuration a stage's
    weights came from (path and hash None for a stage trained before
    stages wrote one)."""
    path = config_path(run, stage)
    if not os.path.isfile(path):
        return {"stage": stage, "path": None, "sha256": None}
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return {"stage": stage, "path": path, "sha256": digest}


def _settings(objective):
    """An objective's plain options (numbers, strings, flags), for config.json."""
    return {k: v for k, v in vars(objective).items()
            if isinstance(v, (bool, int, float, str)) or v is None}


def write_stage_config(run, spec, *, start, model_config, data, training, objective,
                       strategy, prepared, flags=None):
    """Writes `<model_dir>/<stage>/config.json` atomically: what the stage
    resolved (start, inputs, the parts that train and their learning
    rates, epochs, objective), the model it trains, its data and training
    sections and, from the command line, every flag."""
    blocks = spec.value("encoder_blocks", training)
    record = {
        "stage": spec.name,
        "version": etenet_tf.__version__,
        "resolved": {
            "starts_from": start,
            "inputs": spec.inputs,
            "epochs": spec.num_epochs(training),
            "encoder_blocks": blocks,
            "decoder_learning_rate": spec.value("decoder_learning_rate", training),
            "encoder_learning_rate": (spec.value("encoder_learning_rate", training)
                                      if blocks else None),
            "objective": {"name": type(objective).__name__, **_settings(objective)},
            "replicas": strategy.num_replicas_in_sync,
            "workers": strategy_lib.num_workers(strategy),
            "records": {"records_dir": prepared.records_dir,
                        "num_frames": prepared.info["num_frames"],
                        "image_size": prepared.info["image_size"],
                        "train_videos": prepared.train_videos,
                        "vocabulary_size": len(prepared.vocabulary),
                        "max_caption_length": prepared.max_length},
        },
        "model": model_config.to_dict(),
        "data": dataclasses.asdict(data),
        "training": dataclasses.asdict(training),
    }
    if flags is not None:
        record["flags"] = dict(flags)
    files.write_json(config_path(run, spec.name), record)


def run_stage(spec, run, data, model_config, training, *, flags=None):
    """Runs one training stage to the end of its epochs (resuming from its
    last checkpoint), the same way for every `StageSpec`.

    Args:
        spec: the `StageSpec` (or the name of a registered one).
        run: the `RunDir` (`--model_dir`).
        data: the `DataConfig` of the prepared records.
        model_config: the `ModelConfig` of a new model (its frame size and
            count are taken from the records); a stage that starts from an
            earlier one uses the stored model instead.
        training: the `TrainingConfig`.
        flags: optional `{flag: value}` of the whole command, kept in
            `config.json`.

    Returns:
        The best record (`best.json`).

    The stage runs under `--mixed_precision`'s Keras dtype policy; the
    policy before it is restored after it (a model built next in the same
    process, e.g. through the Python API, is not built in bfloat16).
    """
    spec = STAGES[spec] if isinstance(spec, str) else spec
    previous = keras.config.dtype_policy()
    try:
        return _run_stage(spec, run, data, model_config, training, flags)
    finally:
        keras.config.set_dtype_policy(previous)


def _run_stage(spec, run, data, model_config, training, flags):
    start = spec.start_stage(run, training)
    prepared, strategy = _start(data, training)
    with stage_lock(run, strategy, spec.name), reading_records(run, prepared):
        model_config = model_config if start is None else run.read_model_config()
        model = _stage_model(run, model_config, prepared, training, strategy)
        if start is not None:
            run.restore_best(model, start)
        blocks = spec.value("encoder_blocks", training)
        if spec.inputs == "features" and blocks:
            raise ValueError(f"stage {spec.name}: cached features need a frozen encoder")
        model.encoder.set_trainable_blocks(blocks)
        if spec.setup is not None:
            spec.setup(model, training)
        objective = spec.objective(training, prepared)
        epochs = spec.num_epochs(training)
        trainer = make_trainer(
            run, spec.name, model, strategy, training, prepared, objective=objective,
            kind=spec.inputs, epochs=epochs,
            decoder_learning_rate=spec.value("decoder_learning_rate", training),
            encoder_learning_rate=(spec.value("encoder_learning_rate", training)
                                   if blocks else None))
        if strategy_lib.is_chief(strategy):
            write_stage_config(run, spec, start=start,
                               model_config=records_model_config(model_config, prepared),
                               data=data, training=training, objective=objective,
                               strategy=strategy, prepared=prepared, flags=flags)
        if spec.warm_up is not None:
            spec.warm_up(trainer, training, prepared)
        data_dir = prepared.records_dir
        if spec.inputs == "features":
            data_dir = strategy_lib.worker_dir(feature_cache_dir(run, spec, start), strategy)
            built = feature_cache.build_cache(
                model, prepared.records_dir, data_dir, ("train", "val"),
                batch_size=training.eval_batch_size, image_size=prepared.info["image_size"],
                progress=print)
            print(f"feature cache {f'of the {start} encoder ' if start else ''}"
                  f"{'built' if built else 'reused'}: {data_dir}", flush=True)
        best = fit_stage(trainer, training, prepared, data_dir, epochs=epochs)
    done = (f"{spec.name} done: best validation {best['metric']} {best['value']:.4f} "
            f"(epoch {best['epoch']})")
    if start is not None:
        done += f"; {start} best was {run.read_best(start)['value']:.4f}"
    print(done, flush=True)
    return best


# -- the stages ---------------------------------------------------------------


def teacher_forcing(training, prepared):
    """The cross-entropy objective of pretrain and finetune."""
    return TeacherForcing(training.label_smoothing)


def set_remat(model, training):
    """finetune's setup: `--remat` (a training-time choice: model_config.json
    is unchanged)."""
    if training.remat != "none":
        print(model.encoder.set_remat(training.remat).describe(), flush=True)


def scst_start(run, training):
    """The stage whose best checkpoint scst starts from (`--scst_from`)."""
    if training.scst_from != "auto":
        return training.scst_from
    return "finetune" if run.read_best("finetune") is not None else "pretrain"


def cider_frequencies(prepared):
    """The training references' CIDEr-D document frequencies, from
    `cider_df.npz` beside the vocabulary (computed and stored there first
    if the records predate it)."""
    from etenet_tf.text import ngrams
    path = os.path.join(prepared.records_dir, ngrams.FREQUENCIES_FILE)
    frequencies = ngrams.load_frequencies(path, prepared.vocabulary)
    if frequencies is None:
        captions = []
        for shard in records.list_shards(prepared.records_dir, "train"):
            for example in pipeline.eval_dataset([shard], "frames", 64):
                captions += [[r.decode("utf-8") for r in refs if r]
                             for refs in example["references"].numpy()]
        frequencies = ngrams.caption_frequencies(captions, prepared.vocabulary)
        ngrams.save_frequencies(path, frequencies, prepared.vocabulary)
    return frequencies


def self_critical(training, prepared):
    """scst's objective: `SelfCritical` rewarded by CIDEr-D with the
    training references' document frequencies."""
    from etenet_tf.evaluation.cider import CiderD
    from etenet_tf.generation.samplers import drawn_sampler
    from etenet_tf.training.objectives import SelfCritical
    cider = CiderD(*cider_frequencies(prepared), len(prepared.vocabulary),
                   include_end=training.scst_include_end)
    k = training.scst_samples
    sampler = drawn_sampler(training.scst_sampling, k, top_k=training.scst_top_k,
                            top_p=training.scst_top_p)
    return SelfCritical(cider, num_samples=k, baseline=training.scst_baseline,
                        max_length=prepared.max_length - 1, seed=training.seed, sampler=sampler)


PRETRAIN = register_stage(StageSpec(
    "pretrain", "encoder frozen (cached features), the decoder learns",
    objective=teacher_forcing, inputs="features", warm_up=calibrate))
FINETUNE = register_stage(StageSpec(
    "finetune", "the whole network end to end from the best pretrain weights",
    objective=teacher_forcing, start="pretrain", inputs="frames",
    encoder_blocks="finetune_blocks",
    decoder_learning_rate=lambda t: t.finetune_learning_rate or t.learning_rate,
    setup=set_remat))
SCST = register_stage(StageSpec(
    "scst", "self-critical training on CIDEr-D from the best finetune (or pretrain) weights",
    objective=self_critical, start=scst_start, inputs="features",
    decoder_learning_rate="scst_learning_rate"))


def pretrain(run, data, model_config, training):
    """Trains the decoder on cached features of the frozen encoder
    (`run_stage(PRETRAIN, ...)`); returns the best record."""
    return run_stage(PRETRAIN, run, data, model_config, training)


def finetune(run, data, training):
    """Trains encoder and decoder end to end from the best pretrain weights
    (`run_stage(FINETUNE, ...)`); returns the best record."""
    return run_stage(FINETUNE, run, data, None, training)


def scst(run, data, training):
    """Self-critical sequence training on CIDEr-D from the best checkpoint of
    `scst_start`, encoder frozen (`run_stage(SCST, ...)`); returns the best
    record."""
    return run_stage(SCST, run, data, None, training)

"""The training stages: pretrain, finetune and scst, on one training loop.

pretrain: encoder frozen. Its features are cached once (`feature_cache`)
and the decoder trains on them. A randomly initialised encoder first gets
its BatchNorm statistics from training frames (`calibrate_batchnorm`),
since none of its weights will be trained in this stage.

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
import os

import keras

from etenet_tf import files
from etenet_tf.data import attributes as attributes_data
from etenet_tf.data import pipeline, records
from etenet_tf.data import prepare as prepare_lib
from etenet_tf.errors import MissingInputError, UsageError
from etenet_tf.model.config import build_captioner
from etenet_tf.run_dir import NoCheckpointError
from etenet_tf.text import tokenizer as tokenizer_lib
from etenet_tf.text import vocabulary as vocab_lib
from etenet_tf.training import feature_cache, loop
from etenet_tf.training import strategy as strategy_lib
from etenet_tf.training.config import PRECISIONS
from etenet_tf.training.objectives import TeacherForcing


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
    spec = prepared.attributes[1]
    known = list(loop.VALIDATION_METRICS)
    if spec:
        known += [f"acc_{name}" for name in spec] + ["acc_all"]
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


def _stage_model(run, model_config, prepared, training, strategy):
    """Builds (pretrain) or re-creates (later stages) the model, for the
    frame size and count of the records."""
    config = dataclasses.replace(model_config, image_size=prepared.info["image_size"],
                                 num_frames=prepared.info["num_frames"])
    config.validate()  # (after the strategy exists: this may build a backbone)
    run.check_compatible(config, prepared.vocabulary)
    keras.utils.set_random_seed(training.seed)  # same initial weights on every run and worker
    with strategy.scope():
        model = build_captioner(config, prepared.vocabulary.tokens, training.encoder_weights)
    if strategy_lib.is_chief(strategy):
        run.write_model(config, prepared.vocabulary)
    return model


def _preview(prepared, count=2):
    ds = pipeline.eval_dataset(records.list_shards(prepared.records_dir, "val"), "frames", count,
                               image_size=prepared.info["image_size"])
    batch = next(iter(ds))
    return [v.decode("utf-8") for v in batch["video_id"].numpy()], batch["frames"]


def _calibrate(training, model, prepared):
    ds = pipeline.eval_dataset(records.list_shards(prepared.records_dir, "train"), "frames",
                               training.calibration_batch_size,
                               image_size=prepared.info["image_size"])
    used = model.encoder.calibrate_batchnorm(
        b["frames"] for b in ds.take(training.calibration_batches))
    print(f"calibrated encoder BatchNorm statistics on {used} batches of training frames",
          flush=True)


def make_trainer(run, stage, model, strategy, training, prepared, *, objective, kind,
                 decoder_learning_rate, encoder_learning_rate=None):
    """A `loop.Trainer` for one stage, with the stage's epochs and schedule."""
    decay_steps = 0
    if training.lr_schedule == "cosine":
        steps = pipeline.steps_per_epoch(prepared.train_videos, training.batch_size)
        decay_steps = max(1, steps * training.epochs(stage)
                          // training.gradient_accumulation_steps)
    return loop.Trainer(
        model, strategy, run, stage, objective=objective, kind=kind,
        global_batch_size=training.batch_size, decoder_learning_rate=decoder_learning_rate,
        encoder_learning_rate=encoder_learning_rate, clip_norm=training.clip_norm,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        checkpoint_every_steps=training.checkpoint_every_steps, decay_steps=decay_steps,
    )


def fit_stage(trainer, training, prepared, data_dir):
    """Runs `trainer.fit` on the train split of `data_dir` (frame records or
    the feature cache), validating on its val split."""
    kind = trainer.kind
    image_size = prepared.info["image_size"] if kind == "frames" else None
    tokenizer = tokenizer_lib.CaptionTokenizer(prepared.vocabulary, prepared.max_length)
    train_files = records.list_shards(data_dir, "train")
    val = pipeline.eval_dataset(records.list_shards(data_dir, "val"), kind,
                                training.eval_batch_size, image_size=image_size)
    validate = loop.make_validator(trainer.model, val, kind, max_length=prepared.max_length - 1,
                                   preview=_preview(prepared), attributes=prepared.attributes)
    return trainer.fit(
        lambda bs, epoch, ctx: trainer.objective.dataset(
            train_files, kind, tokenizer, bs, epoch=epoch, seed=training.seed,
            image_size=image_size, input_context=ctx),
        num_videos=prepared.train_videos, epochs=training.epochs(trainer.stage),
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


def pretrain(run, data, model_config, training):
    """Trains the decoder on cached features of the frozen encoder.

    Args:
        run: the `RunDir` (`--model_dir`).
        data: the `DataConfig` of the prepared records.
        model_config: the `ModelConfig` (its frame size and count are
            taken from the records).
        training: the `TrainingConfig`.

    Returns:
        The best record (`best.json`).
    """
    prepared, strategy = _start(data, training)
    with stage_lock(run, strategy, "pretrain"), reading_records(run, prepared):
        model = _stage_model(run, model_config, prepared, training, strategy)
        model.encoder.set_trainable_blocks(0)
        trainer = make_trainer(run, "pretrain", model, strategy, training, prepared,
                               objective=TeacherForcing(training.label_smoothing),
                               kind="features", decoder_learning_rate=training.learning_rate)
        calibrate = training.calibrate_batchnorm == "true" or (
            training.calibrate_batchnorm == "auto"
            and str(training.encoder_weights).lower() == "none")
        if trainer.resumed_from is None and calibrate:
            _calibrate(training, model, prepared)
        cache_dir = strategy_lib.worker_dir(run.features_dir, strategy)
        built = feature_cache.build_cache(
            model, prepared.records_dir, cache_dir, ("train", "val"),
            batch_size=training.eval_batch_size, image_size=prepared.info["image_size"],
            progress=print,
        )
        print(f"feature cache {'built' if built else 'reused'}: {cache_dir}", flush=True)
        best = fit_stage(trainer, training, prepared, cache_dir)
    print(f"pretrain done: best validation {best['metric']} {best['value']:.4f} "
          f"(epoch {best['epoch']})", flush=True)
    return best


def finetune(run, data, training):
    """Trains encoder and decoder end to end from the best pretrain weights.

    Args:
        run: the `RunDir` pretrain trained in.
        data: the `DataConfig` of the prepared records.
        training: the `TrainingConfig`.

    Returns:
        The best record (`best.json`).
    """
    if run.read_best("pretrain") is None:
        raise NoCheckpointError(
            f"finetune starts from the best pretrain checkpoint, but {run.best_dir('pretrain')} "
            f"has none: run --stage=pretrain with --model_dir={run.path} first")
    prepared, strategy = _start(data, training)
    with stage_lock(run, strategy, "finetune"), reading_records(run, prepared):
        model = _stage_model(run, run.read_model_config(), prepared, training, strategy)
        run.restore_best(model, "pretrain")
        model.encoder.set_trainable_blocks(training.finetune_blocks)
        if training.remat != "none":  # a training-time choice: model_config.json is unchanged
            print(model.encoder.set_remat(training.remat).describe(), flush=True)
        trainer = make_trainer(
            run, "finetune", model, strategy, training, prepared,
            objective=TeacherForcing(training.label_smoothing), kind="frames",
            decoder_learning_rate=training.finetune_learning_rate or training.learning_rate,
            encoder_learning_rate=(training.encoder_learning_rate
                                   if training.finetune_blocks else None),
        )
        best = fit_stage(trainer, training, prepared, prepared.records_dir)
    pre = run.read_best("pretrain")
    print(f"finetune done: best validation {best['metric']} {best['value']:.4f} "
          f"(epoch {best['epoch']}); pretrain best was {pre['value']:.4f}", flush=True)
    return best


def scst_start(run, training):
    """The stage whose best checkpoint scst starts from (`--scst_from`)."""
    if training.scst_from != "auto":
        start = training.scst_from
    else:
        start = "finetune" if run.read_best("finetune") is not None else "pretrain"
    if run.read_best(start) is None:
        raise NoCheckpointError(
            f"scst starts from the best {start} checkpoint, but {run.best_dir(start)} has none: "
            f"run --stage={start} with --model_dir={run.path} first")
    return start


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


def scst(run, data, training):
    """Self-critical sequence training on CIDEr-D from the best checkpoint of
    `scst_start`, encoder frozen.

    Args:
        run: the `RunDir` the earlier stages trained in.
        data: the `DataConfig` of the prepared records.
        training: the `TrainingConfig` (`scst_*` options).

    Returns:
        The best record (`best.json`).
    """
    from etenet_tf.evaluation.cider import CiderD
    from etenet_tf.training.objectives import SelfCritical
    start = scst_start(run, training)
    prepared, strategy = _start(data, training)
    with stage_lock(run, strategy, "scst"), reading_records(run, prepared):
        model = _stage_model(run, run.read_model_config(), prepared, training, strategy)
        run.restore_best(model, start)
        model.encoder.set_trainable_blocks(0)
        cache_dir = (run.features_dir if start == "pretrain"
                     else os.path.join(run.stage_dir("scst"), "features"))
        cache_dir = strategy_lib.worker_dir(cache_dir, strategy)
        built = feature_cache.build_cache(
            model, prepared.records_dir, cache_dir, ("train", "val"),
            batch_size=training.eval_batch_size, image_size=prepared.info["image_size"],
            progress=print)
        print(f"feature cache of the {start} encoder {'built' if built else 'reused'}: "
              f"{cache_dir}", flush=True)
        cider = CiderD(*cider_frequencies(prepared), len(prepared.vocabulary),
                       include_end=training.scst_include_end)
        objective = SelfCritical(cider, num_samples=training.scst_samples,
                                 baseline=training.scst_baseline,
                                 max_length=prepared.max_length - 1, seed=training.seed)
        trainer = make_trainer(run, "scst", model, strategy, training, prepared,
                               objective=objective, kind="features",
                               decoder_learning_rate=training.scst_learning_rate)
        best = fit_stage(trainer, training, prepared, cache_dir)
    before = run.read_best(start)
    print(f"scst done: best validation {best['metric']} {best['value']:.4f} "
          f"(epoch {best['epoch']}); {start} best was {before['value']:.4f}", flush=True)
    return best

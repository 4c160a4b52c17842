"""`--stage=pretrain` and `--stage=finetune`.

pretrain: encoder frozen. Its features are cached once (`feature_cache`)
and the decoder trains on them. A randomly initialised encoder first gets
its BatchNorm statistics from training frames (`calibrate_batchnorm`),
since none of its weights will be trained in this stage.

finetune: starts from the best pretrain checkpoint, unfreezes the encoder
(all of it, or its top N blocks) with its own, lower learning rate and
trains the whole network end to end on frames.

Both keep `<model_dir>/model_config.json` (the captioner's `ModelConfig`)
and `<model_dir>/vocab.txt`, so later stages rebuild exactly the same model.

A stage holds `<model_dir>/<stage>/.lock` while it runs (the chief only,
with several workers): a second run of the same stage on the same model
directory refuses with one line naming the first one's pid, instead of
resuming from its checkpoints mid-run. A damaged record shard met while
training stops the run with an error that names it and says how to
rewrite it.
"""

import contextlib
import json
import os

import keras

from etenet_tf.data import attributes as attributes_data
from etenet_tf.data import pipeline
from etenet_tf.data import prepare as prepare_lib
from etenet_tf.data import records
from etenet_tf import files
from etenet_tf.errors import UsageError
from etenet_tf.files import write_json
from etenet_tf.model.config import ModelConfig, build_captioner
from etenet_tf.text import tokenizer as tokenizer_lib
from etenet_tf.text import vocabulary as vocab_lib
from etenet_tf.training import checkpoints as checkpoints_lib
from etenet_tf.training import feature_cache
from etenet_tf.training import loop
from etenet_tf.training import strategy as strategy_lib

MODEL_CONFIG = "model_config.json"  # ModelConfig of the captioner
VOCABULARY = "vocab.txt"  # its vocabulary
INPUT_SPEC = "input_spec.json"  # frames per video and frame size the model was trained on
STAGES = ("pretrain", "finetune")


class ModelDirError(Exception):
    """The model directory holds something incompatible."""


def set_precision(mode):
    """`none`, `bfloat16` or `float16` -> Keras global dtype policy."""
    policies = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
    if mode not in policies:
        raise ValueError(f"unknown --mixed_precision {mode!r}; use none or bfloat16")
    if mode == "float16":
        # two optimizers would need two loss scales; bf16 needs none
        raise ValueError("--mixed_precision=float16 is not supported (it needs loss scaling); "
                         "use bfloat16")
    keras.config.set_dtype_policy(policies[mode])


def model_config_from_flags(cfg, info):
    """The `ModelConfig` of the flags, for data prepared as `info` describes."""
    return ModelConfig(
        encoder=cfg.encoder, image_size=info["image_size"], num_frames=info["num_frames"],
        spatial_grid=cfg.spatial_grid, feature_layer=cfg.feature_layer, temporal=cfg.temporal,
        context_dim=cfg.context_dim, embedding_dim=cfg.embedding_dim, hidden_dim=cfg.hidden_dim,
        attention_dim=cfg.attention_dim, dropout=cfg.dropout,
    )


def _read_model_dir_json(model_dir, name):
    path = os.path.join(model_dir, name)
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise files.WriteTargetError(f"--model_dir={model_dir} is a file, not a model directory")
    if not os.path.isfile(path):
        raise checkpoints_lib.NoCheckpointError(
            f"{path} not found: run --stage=pretrain with --model_dir={model_dir} first"
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_model_config(model_dir):
    """The `ModelConfig` stored by pretrain."""
    values = _read_model_dir_json(model_dir, MODEL_CONFIG)
    try:
        return ModelConfig.from_dict(values)
    except (TypeError, ValueError) as e:
        raise ModelDirError(f"{os.path.join(model_dir, MODEL_CONFIG)} is not a model config of "
                            f"this version ({e}); train into a new --model_dir") from None


def load_vocabulary(model_dir):
    """The vocabulary the model in `model_dir` was trained with."""
    return vocab_lib.Vocabulary.load(os.path.join(model_dir, VOCABULARY))


def load_input_spec(model_dir):
    """{"num_frames", "image_size"} of the training data."""
    return _read_model_dir_json(model_dir, INPUT_SPEC)


def build_model(model_config, vocabulary, encoder_weights=None):
    """A captioner from a stored config (call under the strategy scope)."""
    return build_captioner(model_config, vocabulary.tokens, encoder_weights)


def load_trained_model(model_dir, stage="auto"):
    """Rebuilds the model and loads a stage's best weights.

    Args:
        model_dir: the training directory.
        stage: `pretrain`, `finetune`, or `auto` (finetune if it has a best
            checkpoint, else pretrain).

    Returns:
        `(model, stage)`.
    """
    config = load_model_config(model_dir)
    vocabulary = load_vocabulary(model_dir)
    if stage == "auto":
        stage = "finetune" if checkpoints_lib.read_best(os.path.join(model_dir, "finetune")) else "pretrain"
    model = build_model(config, vocabulary)
    checkpoints_lib.restore_best(model, os.path.join(model_dir, stage))
    return model, stage


def reading_records(cfg):
    """Context manager: a damaged record or feature-cache shard read inside
    it becomes a `records.CorruptRecordsError` naming the shard and the fix."""
    return records.reporting_corruption(
        (cfg.records_dir, f"re-run --stage=prepare with the same flags "
                          f"(--records_dir={cfg.records_dir}): it checks every shard and writes "
                          "damaged ones again"),
        (os.path.join(cfg.model_dir, "features"),
         "re-run the same command: pretrain checks its feature cache and computes damaged "
         "shards again"),
    )


def check_batch(cfg, info, strategy):
    """Refuses, before any work, a batch the training split cannot fill (an
    epoch would train zero steps)."""
    videos = info["splits"].get("train", {}).get("videos", 0)
    workers = strategy_lib.num_workers(strategy)
    if pipeline.steps_per_epoch(videos // workers, cfg.batch_size // workers) < 1:
        raise loop.TrainingInputError(
            f"--batch_size={cfg.batch_size} is larger than the {videos} training videos in "
            f"{cfg.records_dir}{f' split over {workers} workers' if workers > 1 else ''}, so an "
            f"epoch would train zero steps; use --batch_size={max(videos // workers, 1) * workers}"
            " or less")


def stage_lock(cfg, strategy, stage):
    """Checks that `--model_dir` is writable and holds the stage's lock
    (the chief only: other workers write nothing there)."""
    if not strategy_lib.is_chief(strategy):
        return contextlib.nullcontext()
    files.ensure_directory(cfg.model_dir, "model_dir")
    return files.exclusive_lock(os.path.join(cfg.model_dir, stage), f"--stage={stage}")


def load_prepared(cfg):
    """`(dataset info, Vocabulary, max caption length)` of `cfg.records_dir`;
    a clear error when its train or val records are missing."""
    info = prepare_lib.load_dataset_info(cfg.records_dir)
    vocabulary = vocab_lib.Vocabulary.load(os.path.join(cfg.records_dir, info["vocabulary"]))
    max_length = cfg.max_caption_length or info["max_caption_length"]
    for split in ("train", "val"):
        if not records.list_shards(cfg.records_dir, split):
            raise FileNotFoundError(
                f"no {split} records in {cfg.records_dir}: training needs train and val videos"
            )
    return info, vocabulary, max_length


def _stage_model(cfg, strategy, info, vocabulary):
    """Builds (pretrain) or re-creates (later) the model for a stage."""
    path = os.path.join(cfg.model_dir, MODEL_CONFIG)
    wanted = model_config_from_flags(cfg, info)
    if os.path.isfile(path):
        stored = load_model_config(cfg.model_dir).to_dict()
        diff = sorted(k for k, v in wanted.to_dict().items() if stored.get(k) != v)
        if os.path.isfile(os.path.join(cfg.model_dir, VOCABULARY)) and \
                load_vocabulary(cfg.model_dir).tokens != vocabulary.tokens:
            diff.append("vocabulary")
        if diff:
            raise ModelDirError(
                f"{cfg.model_dir} holds a model with different {', '.join(diff)}; use a new "
                "--model_dir or the flags it was trained with"
            )
    keras.utils.set_random_seed(cfg.seed)  # same initial weights on every run and worker
    with strategy.scope():
        model = build_model(wanted, vocabulary, cfg.encoder_weights)
    if strategy_lib.is_chief(strategy):
        os.makedirs(cfg.model_dir, exist_ok=True)
        if not os.path.isfile(path):
            vocabulary.save(os.path.join(cfg.model_dir, VOCABULARY))
            write_json(path, wanted.to_dict())
        write_json(os.path.join(cfg.model_dir, INPUT_SPEC),
                        {"num_frames": info["num_frames"], "image_size": info["image_size"]})
    return model


def _preview(cfg, info, count=2):
    ds = pipeline.eval_dataset(records.list_shards(cfg.records_dir, "val"), "frames", count,
                               image_size=info["image_size"])
    batch = next(iter(ds))
    return [v.decode("utf-8") for v in batch["video_id"].numpy()], batch["frames"]


def _calibrate(cfg, model, info):
    ds = pipeline.eval_dataset(records.list_shards(cfg.records_dir, "train"), "frames",
                               cfg.calibration_batch_size, image_size=info["image_size"])
    used = model.encoder.calibrate_batchnorm(
        b["frames"] for b in ds.take(cfg.calibration_batches)
    )
    print(f"calibrated encoder BatchNorm statistics on {used} batches of training frames",
          flush=True)


def _make_trainer(cfg, model, strategy, stage, kind, decoder_learning_rate, epochs, info,
                  encoder_learning_rate=None):
    decay_steps = 0
    if cfg.lr_schedule == "cosine":
        steps = pipeline.steps_per_epoch(info["splits"]["train"]["videos"], cfg.batch_size)
        decay_steps = max(1, steps * epochs // cfg.gradient_accumulation_steps)
    return loop.Trainer(
        model, strategy, os.path.join(cfg.model_dir, stage), kind=kind,
        global_batch_size=cfg.batch_size, decoder_learning_rate=decoder_learning_rate,
        encoder_learning_rate=encoder_learning_rate, label_smoothing=cfg.label_smoothing,
        clip_norm=cfg.clip_norm, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        checkpoint_every_steps=cfg.checkpoint_every_steps, decay_steps=decay_steps,
    )


def check_best_metric(cfg):
    """`--best_metric` must be a score that validation computes on these
    records: a caption metric, or `acc_*` when the clips have attributes."""
    _, spec = attributes_data.load(cfg.records_dir)
    known = list(loop.VALIDATION_METRICS)
    if spec:
        known += [f"acc_{name}" for name in spec] + ["acc_all"]
    if cfg.best_metric not in known:
        raise UsageError(f"--best_metric={cfg.best_metric} is not computed in validation on "
                         f"{cfg.records_dir}; choose one of {', '.join(known)}")


def _fit_stage(cfg, trainer, info, vocabulary, max_length, data_dir, epochs):
    """Runs `trainer.fit` on the train split of `data_dir`, validating on
    its val split; the record kind (frames or features) is the trainer's."""
    kind = trainer.kind
    image_size = info["image_size"] if kind == "frames" else None
    tokenizer = tokenizer_lib.CaptionTokenizer(vocabulary, max_length)
    train_files = records.list_shards(data_dir, "train")
    val = pipeline.eval_dataset(records.list_shards(data_dir, "val"), kind,
                                cfg.eval_batch_size, image_size=image_size)
    validate = loop.make_validator(trainer.model, val, kind, max_length=max_length - 1,
                                   preview=_preview(cfg, info),
                                   attributes=attributes_data.load(cfg.records_dir))
    return trainer.fit(
        lambda bs, epoch, ctx: pipeline.train_dataset(
            train_files, kind, tokenizer, bs, epoch=epoch, seed=cfg.seed,
            image_size=image_size, input_context=ctx),
        num_videos=info["splits"]["train"]["videos"], epochs=epochs,
        validate=validate, best_metric=cfg.best_metric,
    )


def run_pretrain(cfg):
    """Trains the decoder on cached features of the frozen encoder."""
    info, vocabulary, max_length = load_prepared(cfg)
    check_best_metric(cfg)
    set_precision(cfg.mixed_precision)
    strategy = strategy_lib.make_strategy(cfg.strategy)
    check_batch(cfg, info, strategy)
    with stage_lock(cfg, strategy, "pretrain"), reading_records(cfg):
        return _pretrain(cfg, strategy, info, vocabulary, max_length)


def _pretrain(cfg, strategy, info, vocabulary, max_length):
    model = _stage_model(cfg, strategy, info, vocabulary)
    model.encoder.set_trainable_blocks(0)
    trainer = _make_trainer(cfg, model, strategy, "pretrain", "features", cfg.learning_rate,
                            cfg.pretrain_epochs, info)
    calibrate = cfg.calibrate_batchnorm == "true" or (
        cfg.calibrate_batchnorm == "auto" and str(cfg.encoder_weights).lower() == "none")
    if trainer.resumed_from is None and calibrate:
        _calibrate(cfg, model, info)
    cache_dir = strategy_lib.worker_dir(os.path.join(cfg.model_dir, "features"), strategy)
    built = feature_cache.build_cache(
        model, cfg.records_dir, cache_dir, ("train", "val"),
        batch_size=cfg.eval_batch_size, image_size=info["image_size"], progress=print,
    )
    print(f"feature cache {'built' if built else 'reused'}: {cache_dir}", flush=True)
    best = _fit_stage(cfg, trainer, info, vocabulary, max_length, cache_dir, cfg.pretrain_epochs)
    print(f"pretrain done: best validation {best['metric']} {best['value']:.4f} "
          f"(epoch {best['epoch']})", flush=True)
    return best


def run_finetune(cfg):
    """Trains encoder and decoder end to end from the best pretrain weights."""
    pretrain_dir = os.path.join(cfg.model_dir, "pretrain")
    if checkpoints_lib.read_best(pretrain_dir) is None:
        raise checkpoints_lib.NoCheckpointError(
            f"finetune starts from the best pretrain checkpoint, but {pretrain_dir} has none: "
            f"run --stage=pretrain with --model_dir={cfg.model_dir} first"
        )
    info, vocabulary, max_length = load_prepared(cfg)
    check_best_metric(cfg)
    set_precision(cfg.mixed_precision)
    strategy = strategy_lib.make_strategy(cfg.strategy)
    check_batch(cfg, info, strategy)
    with stage_lock(cfg, strategy, "finetune"), reading_records(cfg):
        return _finetune(cfg, strategy, info, vocabulary, max_length)


def _finetune(cfg, strategy, info, vocabulary, max_length):
    pretrain_dir = os.path.join(cfg.model_dir, "pretrain")
    model = _stage_model(cfg, strategy, info, vocabulary)
    checkpoints_lib.restore_best(model, pretrain_dir)
    model.encoder.set_trainable_blocks(cfg.finetune_blocks)
    trainer = _make_trainer(
        cfg, model, strategy, "finetune", "frames", cfg.finetune_learning_rate or cfg.learning_rate,
        cfg.finetune_epochs, info,
        encoder_learning_rate=cfg.encoder_learning_rate if cfg.finetune_blocks else None,
    )
    best = _fit_stage(cfg, trainer, info, vocabulary, max_length, cfg.records_dir,
                      cfg.finetune_epochs)
    pre = checkpoints_lib.read_best(pretrain_dir)
    print(f"finetune done: best validation {best['metric']} {best['value']:.4f} "
          f"(epoch {best['epoch']}); pretrain best was {pre['value']:.4f}", flush=True)
    return best

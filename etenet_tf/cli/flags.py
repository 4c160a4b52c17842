"""absl flags of `main.py`. Experiment presets live in `flags/*.cfg`."""

import math
import types

from absl import flags

from etenet_tf import limits

STAGES = ("prepare", "pretrain", "finetune", "evaluate", "caption", "export", "all")
DATASETS = ("shapes", "msrvtt", "msvd", "custom")

FLAGS = flags.FLAGS


def define_flags():
    """Defines every flag once (safe to call again)."""
    if "stage" in FLAGS:
        return
    d = flags
    d.DEFINE_enum("stage", None, STAGES, "What to run. `all` = prepare, pretrain, finetune, "
                  "evaluate, export.")
    # data
    d.DEFINE_enum("dataset", "shapes", DATASETS, "Dataset adapter for prepare.")
    d.DEFINE_list("annotations", [], "Annotation file(s): msrvtt: the two official JSON files; "
                  "msvd: captions_msvd.json; custom: a CSV or JSONL.")
    d.DEFINE_string("video_dir", None, "Directory holding the videos (shapes: generated there).")
    d.DEFINE_string("msvd_split_dir", None, "MSVD: directory with train/val/test_list.txt "
                    "(default: beside the captions file).")
    d.DEFINE_string("msvd_mapping", None, "MSVD: youtube_mapping.txt (splits by vidN).")
    d.DEFINE_string("records_dir", "runs/shapes/records", "Where prepare writes TFRecords.")
    d.DEFINE_integer("frames", 8, "Frames sampled uniformly per video.")
    d.DEFINE_integer("image_size", 299, "Frame side in pixels (InceptionV3 minimum: 75).")
    d.DEFINE_integer("videos_per_shard", 64, "Videos per TFRecord shard.")
    d.DEFINE_integer("workers", 0, "Decoding processes for prepare (0 = CPU count).")
    d.DEFINE_boolean("strict", False, "Stop prepare at the first missing/undecodable video.")
    d.DEFINE_integer("min_word_count", 2, "Words rarer than this in train captions -> <unk>.")
    d.DEFINE_integer("shapes_train_per_combination", 5,
                     "shapes: train clips per (colour, shape, direction).")
    d.DEFINE_integer("shapes_seed", 1234, "shapes: generation seed (another seed renders clips "
                     "that share nothing with the default ones, e.g. to test on unseen clips).")
    # model
    d.DEFINE_string("model_dir", "runs/shapes/model", "Checkpoints, logs and results.")
    d.DEFINE_string("encoder", "inception_v3", "keras.applications encoder: inception_v3 or "
                    "inception_resnet_v2.")
    d.DEFINE_string("encoder_weights", "imagenet", "imagenet (Keras cache), none, or a weights "
                    "file path.")
    d.DEFINE_enum("calibrate_batchnorm", "auto", ["auto", "true", "false"],
                  "Estimate encoder BatchNorm statistics from training frames before pretrain "
                  "(auto: only with --encoder_weights=none).")
    d.DEFINE_integer("calibration_batches", 8, "Batches used for BatchNorm calibration.")
    d.DEFINE_integer("calibration_batch_size", 8, "Videos per calibration batch.")
    d.DEFINE_integer("spatial_grid", 1, "Cells per side of each frame's feature grid: 1 pools "
                     "each frame to one vector (the paper); N keeps N x N cells with position "
                     "embeddings, and attention runs over frames x cells.")
    d.DEFINE_string("feature_layer", "", "Encoder layer pooled into the grid (empty: the last; "
                    "e.g. mixed7 for InceptionV3, 3x3 at 75 px).")
    d.DEFINE_enum("temporal", "none", ["none", "position", "conv", "gru"],
                  "Frame order in the model: none (the paper: order-free attention), position "
                  "(frame-index embedding) or conv (embedding + 3-D convolution over frames and "
                  "cells for local motion).")
    d.DEFINE_integer("context_dim", 256, "Memory token size after projection when a grid or "
                     "temporal option is on (0: keep the encoder's channels; conv needs > 0).")
    d.DEFINE_integer("embedding_dim", 256, "Word embedding size.")
    d.DEFINE_integer("hidden_dim", 512, "LSTM size.")
    d.DEFINE_integer("attention_dim", 256, "Attention MLP size.")
    d.DEFINE_float("dropout", 0.5, "Decoder dropout.")
    d.DEFINE_integer("max_caption_length", 0, "Tokens per training caption incl. <start>/<end> "
                     "(0: from prepare's dataset.json).")
    # training
    d.DEFINE_enum("strategy", "auto", ["auto", "one_device", "mirrored", "multi_worker"],
                  "tf.distribute strategy.")
    d.DEFINE_integer("batch_size", 16, "Global training batch size (videos).")
    d.DEFINE_integer("eval_batch_size", 32, "Batch size for validation, caching and evaluation.")
    d.DEFINE_integer("pretrain_epochs", 20, "Epochs of pretrain.")
    d.DEFINE_integer("finetune_epochs", 5, "Epochs of finetune.")
    d.DEFINE_float("learning_rate", 2e-4, "Decoder learning rate (Adam).")
    d.DEFINE_float("finetune_learning_rate", 0.0, "Decoder learning rate in finetune "
                   "(0: --learning_rate).")
    d.DEFINE_float("encoder_learning_rate", 1e-5, "Encoder learning rate in finetune (Adam).")
    d.DEFINE_integer("finetune_blocks", -1, "Encoder blocks unfrozen in finetune: -1 = all, "
                     "N = top N.")
    d.DEFINE_enum("lr_schedule", "constant", ["constant", "cosine"],
                  "Learning rates per stage: constant, or cosine decay to 10% over the stage.")
    d.DEFINE_float("label_smoothing", 0.0, "Label smoothing of the caption loss.")
    d.DEFINE_float("clip_norm", 5.0, "Global gradient norm clip.")
    d.DEFINE_integer("gradient_accumulation_steps", 1, "Batches per optimizer update.")
    d.DEFINE_enum("mixed_precision", "none", ["none", "bfloat16", "float16"],
                  "Mixed precision policy (bfloat16 recommended on GPUs).")
    d.DEFINE_integer("checkpoint_every_steps", 50, "Resume checkpoint interval (0: per epoch).")
    d.DEFINE_string("best_metric", "CIDEr", "Validation metric that picks the best checkpoint.")
    d.DEFINE_integer("seed", 0, "Seed for data order and caption choice.")
    # decoding / evaluation / caption / export
    d.DEFINE_integer("beam_size", 5, "Beam size (1 = greedy).")
    d.DEFINE_float("length_penalty", 0.6, "Beam search length penalty alpha.")
    d.DEFINE_integer("max_decode_length", 20, "Most tokens generated per caption.")
    d.DEFINE_string("split", "test", "Split to evaluate.")
    d.DEFINE_enum("checkpoint", "auto", ["auto", "pretrain", "finetune", "both"],
                  "Which best checkpoint to use (auto: finetune if trained, else pretrain; "
                  "both: evaluate each).")
    d.DEFINE_list("videos", [], "caption: video files to caption.")
    d.DEFINE_string("output", None, "caption: also write {path: caption} JSON here.")
    d.DEFINE_string("attention_dir", None, "caption: write an attention picture per video here.")
    d.DEFINE_string("export_dir", "saved_models", "Export root (TF Serving layout).")
    d.DEFINE_string("export_name", "etenet", "Model name under --export_dir.")
    d.DEFINE_integer("export_version", 0, "Version number (0: next free).")
    d.DEFINE_integer("max_serving_frames", limits.MAX_SERVING_FRAMES,
                     "export: most frames per video in a serving request.")
    d.DEFINE_integer("max_serving_total_frames", limits.MAX_SERVING_TOTAL_FRAMES,
                     "export: most frames in one serving request (videos x frames); bounds "
                     "the memory of a request.")
    d.DEFINE_integer("max_frame_pixels", limits.MAX_FRAME_PIXELS,
                     "Most pixels (height x width) a video or JPEG frame may declare; larger "
                     "ones are refused before decoding (prepare, caption, serving). Default "
                     "8192x8192.")


# stages that build a model from the model flags (later stages read model_config.json)
_TRAINING_STAGES = ("pretrain", "all")


class FlagError(Exception):
    """A flag value is unusable; the message says which and why."""


def validate(cfg):
    """Cross-flag checks absl cannot express. Raises FlagError."""
    from etenet_tf.model import encoder as encoder_lib
    if cfg.stage is None:
        raise FlagError("--stage is required: one of " + ", ".join(STAGES))
    if cfg.encoder not in encoder_lib.ENCODERS:
        raise FlagError(f"--encoder={cfg.encoder} is unknown; choose one of "
                        f"{', '.join(sorted(encoder_lib.ENCODERS))}")
    if cfg.frames < 1:
        raise FlagError(f"--frames={cfg.frames}: need at least 1 frame")
    minimum = encoder_lib.ENCODERS[cfg.encoder].min_image_size
    if cfg.image_size < minimum:
        raise FlagError(f"--image_size={cfg.image_size} is below the {cfg.encoder} minimum "
                        f"of {minimum}")
    if cfg.spatial_grid < 1:
        raise FlagError(f"--spatial_grid={cfg.spatial_grid} must be >= 1")
    if cfg.temporal == "conv" and cfg.context_dim < 1 and cfg.stage in _TRAINING_STAGES:
        raise FlagError("--temporal=conv needs --context_dim > 0 (the 3-D convolution runs "
                        "on projected features)")
    if cfg.stage in _TRAINING_STAGES and (cfg.spatial_grid > 1 or cfg.feature_layer):
        try:
            encoder_lib.check_options(cfg.encoder, cfg.image_size, cfg.spatial_grid,
                                      cfg.feature_layer)
        except encoder_lib.EncoderOptionError as e:
            raise FlagError(f"{e} (--spatial_grid / --feature_layer / --image_size)") from None
    for name in ("batch_size", "eval_batch_size", "videos_per_shard", "beam_size",
                 "max_decode_length", "gradient_accumulation_steps", "calibration_batches",
                 "calibration_batch_size", "embedding_dim", "hidden_dim", "attention_dim",
                 "pretrain_epochs", "finetune_epochs", "shapes_train_per_combination",
                 "max_serving_frames", "max_serving_total_frames", "max_frame_pixels"):
        if getattr(cfg, name) < 1:
            raise FlagError(f"--{name}={getattr(cfg, name)} must be >= 1")
    for name in ("workers", "min_word_count", "checkpoint_every_steps", "export_version",
                 "seed"):
        if getattr(cfg, name) < 0:
            raise FlagError(f"--{name}={getattr(cfg, name)} must be >= 0"
                            + (" (0: one per CPU)" if name == "workers" else ""))
    if cfg.finetune_blocks < -1:
        raise FlagError(f"--finetune_blocks={cfg.finetune_blocks} must be -1 (all), 0 or a "
                        "block count")
    ranges = {  # name: (low, high, low included, high included)
        "dropout": (0.0, 1.0, True, False),
        "label_smoothing": (0.0, 1.0, True, False),
        "learning_rate": (0.0, math.inf, False, False),
        "finetune_learning_rate": (0.0, math.inf, True, False),
        "encoder_learning_rate": (0.0, math.inf, True, False),
        "clip_norm": (0.0, math.inf, False, False),
        "length_penalty": (0.0, math.inf, True, False),
    }
    for name, (low, high, low_ok, high_ok) in ranges.items():
        value = getattr(cfg, name)
        inside = (math.isfinite(value) and (value > low or (low_ok and value == low))
                  and (value < high or (high_ok and value == high)))
        if not inside:
            span = f"{'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}"
            raise FlagError(f"--{name}={value:g} must be in {span}")
    if cfg.max_caption_length and cfg.max_caption_length < 3:
        raise FlagError("--max_caption_length must be 0 (automatic) or >= 3")
    if cfg.dataset in ("msrvtt", "msvd", "custom") and cfg.stage in ("prepare", "all") \
            and not cfg.annotations:
        raise FlagError(f"--dataset={cfg.dataset} needs --annotations")
    if cfg.stage == "caption" and not cfg.videos:
        raise FlagError("--stage=caption needs --videos=a.mp4,b.webm,...")
    if cfg.split not in ("train", "val", "test"):
        raise FlagError(f"--split={cfg.split} is unknown; choose train, val or test")
    if cfg.mixed_precision == "float16":
        raise FlagError("--mixed_precision=float16 is not supported (two optimizers would "
                        "need two loss scales); use bfloat16")


def _own_flag_names():
    define_flags()
    return sorted(f.name for f in FLAGS.flags_by_module_dict().get(__name__, []))


def snapshot():
    """The parsed flags as a plain namespace (what the stages read)."""
    return types.SimpleNamespace(**{name: FLAGS[name].value for name in _own_flag_names()})


def defaults(**overrides):
    """Flag defaults as a namespace, with overrides (for tests and scripts)."""
    values = {name: FLAGS[name].default for name in _own_flag_names()}
    unknown = set(overrides) - set(values)
    if unknown:
        raise KeyError(f"unknown flags: {sorted(unknown)}")
    values.update(overrides)
    return types.SimpleNamespace(**values)

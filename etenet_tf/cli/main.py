"""Entry point: `python main.py --stage=...` (see README)."""

import errno
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter out

from absl import app  # noqa: E402
from absl import flags as absl_flags  # noqa: E402
from absl import logging  # noqa: E402

from etenet_tf import files  # noqa: E402
from etenet_tf import interrupts  # noqa: E402
from etenet_tf.cli import flags as flags_lib  # noqa: E402

USAGE_ERROR = 2


def _prepare_examples(cfg):
    from etenet_tf.data import datasets, shapes
    if cfg.dataset == "shapes":
        # clips and annotations go to --video_dir, or beside --records_dir
        if cfg.video_dir:
            out = video_dir = cfg.video_dir
        else:
            out = os.path.join(os.path.dirname(os.path.abspath(cfg.records_dir)), "shapes")
            video_dir = os.path.join(out, "videos")
        if cfg.video_dir:
            files.ensure_directory(video_dir, "video_dir")
        annotations = shapes.generate(out, (cfg.shapes_train_per_combination, 1, 1),
                                      video_dir=video_dir, seed=cfg.shapes_seed)
        return datasets.load_custom(annotations, video_dir)
    if cfg.dataset == "msrvtt":
        return datasets.load_msrvtt(cfg.annotations, cfg.video_dir)
    if cfg.dataset == "msvd":
        captions = cfg.annotations[0]
        split_dir = cfg.msvd_split_dir or os.path.dirname(os.path.abspath(captions))
        return datasets.load_msvd(captions, cfg.video_dir, split_dir, cfg.msvd_mapping)
    return datasets.load_custom(cfg.annotations[0], cfg.video_dir or
                                os.path.dirname(os.path.abspath(cfg.annotations[0])))


def run_prepare(cfg):
    from etenet_tf.data import prepare
    from etenet_tf.text import tokenizer, vocabulary

    files.ensure_directory(cfg.records_dir, "records_dir")
    examples = _prepare_examples(cfg)
    start = time.time()
    last = [0.0]

    def progress(done, total):
        now = time.time()
        if done == total or now - last[0] > 2:
            last[0] = now
            print(f"\rprepare: {done}/{total} videos", end="\n" if done == total else "",
                  flush=True)
            mid_line[0] = done != total

    mid_line = [False]
    try:
        report = prepare.prepare(
            examples, cfg.records_dir, cfg.frames, cfg.image_size, dataset_name=cfg.dataset,
            vocabulary_builder=lambda caps: vocabulary.Vocabulary.build(
                tokenizer.words_of(caps), cfg.min_word_count),
            videos_per_shard=cfg.videos_per_shard, workers=cfg.workers or None,
            strict=cfg.strict, max_pixels=cfg.max_frame_pixels, progress=progress,
        )
    except BaseException:
        if mid_line[0]:
            print(flush=True)  # end the progress line before the error line
        raise
    written = ", ".join(f"{k} {v}" for k, v in report["written"].items()) or "none"
    print(f"prepare: wrote {written} videos to {cfg.records_dir} in {time.time() - start:.1f}s; "
          f"skipped {len(report['missing'])} missing, {len(report['undecodable'])} undecodable, "
          f"{len(report['unsafe_id'])} unsafe ids, {len(report['no_captions'])} without "
          f"captions (details: {os.path.join(cfg.records_dir, prepare.REPORT_FILE)}); "
          f"vocabulary {report['vocabulary_size']} tokens")
    return report


def run_stage(cfg):
    stage = cfg.stage
    if stage == "prepare":
        return run_prepare(cfg)
    if stage == "pretrain":
        from etenet_tf.training import stages
        return stages.run_pretrain(cfg)
    if stage == "finetune":
        from etenet_tf.training import stages
        return stages.run_finetune(cfg)
    if stage == "evaluate":
        from etenet_tf.evaluation import evaluate
        return evaluate.run_evaluate(cfg)
    if stage == "caption":
        from etenet_tf import caption_videos
        return caption_videos.run_caption(cfg)
    if stage == "export":
        from etenet_tf.export import serving
        return serving.run_export(cfg)
    if stage == "all":
        from etenet_tf import main_job
        return main_job.run_all(cfg)
    raise flags_lib.FlagError(f"unknown stage {stage}")


def _user_errors():
    """Exceptions that mean 'the user must fix something', by exit code."""
    from etenet_tf.data.datasets import AnnotationError
    from etenet_tf.data.prepare import PrepareError
    from etenet_tf.data.records import CorruptRecordsError
    from etenet_tf.model.encoder import EncoderWeightsError
    from etenet_tf.export.serving import ExportWriteError
    from etenet_tf.text.vocabulary import VocabularyError
    from etenet_tf.training.checkpoints import (CheckpointWriteError, CorruptCheckpointError,
                                                NoCheckpointError)
    from etenet_tf.training.loop import TrainingDivergedError, TrainingInputError
    from etenet_tf.training.stages import ModelDirError
    from etenet_tf.errors import UsageError
    usage = (flags_lib.FlagError, NoCheckpointError, files.WriteTargetError, TrainingInputError,
             UsageError)
    other = (AnnotationError, PrepareError, EncoderWeightsError, ModelDirError,
             TrainingDivergedError, FileNotFoundError, CheckpointWriteError, ExportWriteError,
             CorruptRecordsError, CorruptCheckpointError, VocabularyError, files.LockedError)
    return usage, other


def _message(error):
    """An exception's message as its author wrote it (`str(KeyError(m))`
    would add quotes)."""
    if len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error)


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])} (flags need --name=value)")
    logging.set_verbosity(logging.WARNING)  # TF's per-save INFO lines drown the progress bars
    cfg = flags_lib.snapshot()
    try:
        usage, other = (), ()
        flags_lib.validate(cfg)
        usage, other = _user_errors()
        result = run_stage(cfg)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (interrupts.install)
        detail = getattr(e, "detail", None)
        _fail(f"stopped by {interrupts.signal_name(e)}{'; ' + detail if detail else ''}; re-run "
              "the same command to resume", code=interrupts.exit_code(e))
    except flags_lib.FlagError as e:
        _fail(_message(e))
    except usage as e:
        _fail(_message(e))
    except other as e:
        _fail(_message(e), code=1)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        _fail(f"could not write {e.filename or 'a file'}: {e.strerror}. Free disk space and "
              "re-run the same command: finished work is kept", code=1)
    if cfg.stage == "caption" and result:
        sys.exit(1)  # some videos failed; each got its own error line


def _fail(message, code=USAGE_ERROR):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _parse(argv):
    try:
        return absl_flags.FLAGS(argv)
    except absl_flags.Error as e:
        # absl prefixes some messages with its own "ERROR:" tag
        message = str(e)
        while message.upper().startswith("ERROR:"):
            message = message[len("ERROR:"):].lstrip(": ")
        _fail(message)


def run():
    interrupts.install()
    flags_lib.define_flags()
    try:
        app.run(main, flags_parser=_parse)
    except KeyboardInterrupt as e:  # before main() started
        _fail(f"stopped by {interrupts.signal_name(e)}", code=interrupts.exit_code(e))

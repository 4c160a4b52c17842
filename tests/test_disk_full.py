"""A full disk while writing a checkpoint or an export leaves the previous
one intact. The fault is real: RLIMIT_FSIZE makes the kernel fail the
write (EFBIG) inside TensorFlow's own C++ writers, as ENOSPC would."""

import contextlib
import os
import resource
import signal

import numpy as np
import pytest
import tensorflow as tf

from etenet_tf.export import serving
from etenet_tf.export.config import ExportConfig
from etenet_tf.generation import DecodingConfig
from etenet_tf.run_dir import RunDir
from etenet_tf.training import checkpoints

from helpers import error_lines, run_main

# 128 KiB: below the tiny model's checkpoint (450 KB) and SavedModel variables (300 KB)
LIMIT = 1 << 17


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))


@contextlib.contextmanager
def disk_full():
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.getsignal(signal.SIGXFSZ)
    _limit_file_size()
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_checkpoint_write_failure_keeps_previous(trained_model_dir, tmp_path):
    model = RunDir(trained_model_dir.model_dir).load_trained_model("finetune")
    saver = checkpoints.TrainingCheckpoints(RunDir(str(tmp_path)), "stage", model, {},
                                            tf.distribute.OneDeviceStrategy("/cpu:0"))
    saver.step.assign(5)
    first = saver.save()
    kernel = model.decoder.output_projection.kernel
    before = kernel.numpy()
    kernel.assign(before + 1.0)
    saver.step.assign(10)
    with disk_full(), pytest.raises(checkpoints.CheckpointWriteError,
                                    match="File too large.*previous one is intact.*ckpt-5"):
        saver.save()
    directory = str(tmp_path / "stage" / "checkpoints")
    assert tf.train.latest_checkpoint(directory) == first
    assert not [n for n in os.listdir(directory) if "temp" in n]  # no half-written ckpt-10
    saver.checkpoint.restore(first).assert_existing_objects_matched()
    np.testing.assert_array_equal(kernel.numpy(), before)
    with disk_full(), pytest.raises(checkpoints.CheckpointWriteError, match="best"):
        saver.save_best({"metric": "CIDEr", "value": 1.0, "epoch": 1, "step": 10, "scores": {}})
    assert RunDir(str(tmp_path)).read_best("stage") is None


@pytest.mark.slow
def test_export_write_failure_keeps_previous_version(trained_model_dir, tmp_path):
    cfg = trained_model_dir
    model = RunDir(cfg.model_dir).load_trained_model("finetune")
    export_dir = tmp_path / "exports"
    first = serving.export(model, ExportConfig(export_dir=str(export_dir), export_name="etenet"),
                           DecodingConfig(beam_size=1, max_decode_length=5))
    files = sorted(os.path.relpath(os.path.join(d, f), first)
                   for d, _, fs in os.walk(first) for f in fs)
    # the same fault, through the command line: one error line, exit 1
    result = run_main("--stage=export", f"--export_dir={export_dir}", "--export_name=etenet",
                      f"--model_dir={cfg.model_dir}", "--beam_size=1", "--max_decode_length=5",
                      preexec_fn=_limit_file_size)
    assert result.returncode == 1, result.stderr[-3000:]
    errors = error_lines(result)
    assert len(errors) == 1 and "could not write the export" in errors[0], result.stderr[-3000:]
    assert "nothing was published" in errors[0] and "Traceback" not in result.stderr
    assert sorted(os.listdir(export_dir / "etenet")) == ["1"]  # no 2, no temp dir
    assert files == sorted(os.path.relpath(os.path.join(d, f), first)
                           for d, _, fs in os.walk(first) for f in fs)
    frames = tf.random.stateless_uniform([1, 2, 75, 75, 3], [3, 4], 0, 255)
    out = tf.saved_model.load(first).signatures["serving_frames"](frames=frames)
    assert out["captions"].shape == (1,)

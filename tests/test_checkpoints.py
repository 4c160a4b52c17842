"""Resume and best checkpoints on disk: damage, fallback, clear errors."""

import os
import shutil
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from etenet_tf import run_dir
from etenet_tf.run_dir import RunDir
from etenet_tf.training import checkpoints

from conftest import read_only_dir, unprivileged
from helpers import run_python


def _tiny_checkpoints(stage_dir):
    """A small Keras model with the stage's checkpoints, as a run creates them."""
    import keras
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    run = RunDir(os.path.dirname(str(stage_dir)))
    return model, checkpoints.TrainingCheckpoints(
        run, os.path.basename(str(stage_dir)), model, {}, tf.distribute.OneDeviceStrategy("/cpu:0"))


def _flip_bytes(path, count=64):
    data = bytearray(open(path, "rb").read())
    middle = len(data) // 2
    for i in range(middle, min(middle + count, len(data))):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))


def _damage(directory, name, how):
    prefix = os.path.join(directory, name)
    if how == "flipped_data":
        _flip_bytes(prefix + ".data-00000-of-00001")
    elif how == "flipped_index":
        _flip_bytes(prefix + ".index", 16)
    elif how == "missing_data_file":
        os.remove(prefix + ".data-00000-of-00001")
    elif how in ("truncated_data", "truncated_index"):  # a copy or a disk cut short
        path = prefix + (".data-00000-of-00001" if how == "truncated_data" else ".index")
        os.truncate(path, os.path.getsize(path) // 2)
    elif how == "bad_header":  # the index's first block overwritten
        with open(prefix + ".index", "r+b") as f:
            f.write(b"\0" * 32)
    elif how == "wrong_tensors":  # another checkpoint's data file beside this index
        older = sorted(n for n in os.listdir(directory) if n.endswith(".data-00000-of-00001")
                       and not n.startswith(name + "."))[0]
        shutil.copyfile(os.path.join(directory, older), prefix + ".data-00000-of-00001")
    elif how == "empty_state_file":
        open(os.path.join(directory, "checkpoint"), "w").close()


@pytest.mark.parametrize("how", ["flipped_data", "flipped_index", "missing_data_file",
                                 "truncated_data", "truncated_index", "bad_header",
                                 "wrong_tensors", "empty_state_file"])
def test_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, capsys, how):
    model, saver = _tiny_checkpoints(tmp_path / "stage")
    kernel = model.layers[0].kernel
    kernel.assign(tf.ones_like(kernel))
    saver.step.assign(5)
    saver.save()
    kernel.assign(2 * tf.ones_like(kernel))
    saver.step.assign(10)
    saver.save()
    directory = str(tmp_path / "stage" / "checkpoints")
    _damage(directory, "ckpt-10", how)
    capsys.readouterr()
    model, saver = _tiny_checkpoints(tmp_path / "stage")  # the re-run
    restored = saver.restore_latest()
    warnings = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(warnings) == 1 and warnings[0].startswith("warning:"), warnings
    if how == "empty_state_file":  # both checkpoints are intact: the newest is used
        assert restored == os.path.join(directory, "ckpt-10") and "rebuilt" in warnings[0]
        return
    assert restored == os.path.join(directory, "ckpt-5")
    assert "ckpt-10 is damaged" in warnings[0] and "resuming from" in warnings[0]
    assert int(saver.step.numpy()) == 5
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), np.ones((3, 2)))
    # the damaged files are kept aside, and the run goes on saving normally
    assert not os.path.exists(os.path.join(directory, "ckpt-10.index"))
    assert os.path.exists(os.path.join(directory, "ckpt-10.index.corrupt"))
    saver.step.assign(8)
    saver.save()
    assert tf.train.latest_checkpoint(directory) == os.path.join(directory, "ckpt-8")
    assert run_dir.checkpoint_paths(directory) == [os.path.join(directory, "ckpt-8"),
                                                       os.path.join(directory, "ckpt-5")]


def test_no_intact_checkpoint_left_is_a_clear_error(tmp_path, capsys):
    model, saver = _tiny_checkpoints(tmp_path / "stage")
    saver.step.assign(5)
    saver.save()
    _damage(str(tmp_path / "stage" / "checkpoints"), "ckpt-5", "flipped_data")
    model, saver = _tiny_checkpoints(tmp_path / "stage")
    with pytest.raises(run_dir.CorruptCheckpointError, match="delete .*checkpoints"):
        saver.restore_latest()


def test_damaged_best_checkpoint_is_a_clear_error(tmp_path):
    model, saver = _tiny_checkpoints(tmp_path / "stage")
    saver.step.assign(7)
    saver.save_best({"metric": "CIDEr", "value": 1.0, "epoch": 1, "step": 7, "scores": {}})
    run = RunDir(str(tmp_path))
    run.restore_best(model, "stage")  # intact: loads
    _damage(str(tmp_path / "stage" / "best"), "ckpt-7", "truncated_data")
    best_dir = str(tmp_path / "stage" / "best")
    with pytest.raises(run_dir.CorruptCheckpointError,
                       match=f"{best_dir} is damaged .*restore .* from a backup") as error:
        run.restore_best(model, "stage")
    assert "--stage=stage" in str(error.value)
    # a training run refuses to go on from it as well, with the same message
    with pytest.raises(run_dir.CorruptCheckpointError, match="only copy"):
        _tiny_checkpoints(tmp_path / "stage")
    open(os.path.join(best_dir, "best.json"), "w").write("{not json")
    with pytest.raises(run_dir.CorruptCheckpointError, match="best.json"):
        run.read_best("stage")


def test_temp_dir_of_a_killed_save_is_removed(tmp_path):
    leftover = tmp_path / "stage" / "checkpoints" / "ckpt-7_temp"
    leftover.mkdir(parents=True)
    (leftover / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x" * 1000)
    _tiny_checkpoints(tmp_path / "stage")
    assert not leftover.exists()


_READ_ONLY_SAVE = textwrap.dedent("""
    import sys
    import os
    import keras, tensorflow as tf
    from etenet_tf.run_dir import RunDir
    from etenet_tf.training import checkpoints
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    saver = checkpoints.TrainingCheckpoints(
        RunDir(os.path.dirname(sys.argv[1])), os.path.basename(sys.argv[1]), model, {},
        tf.distribute.OneDeviceStrategy("/cpu:0"))
    saver.step.assign(3)
    try:
        saver.save()
    except checkpoints.CheckpointWriteError as e:
        print(e)
""")


def test_read_only_checkpoint_dir_is_not_called_a_full_disk(tmp_path):
    stage = tmp_path / "stage"
    read_only_dir(stage / "checkpoints")
    proc = run_python(_READ_ONLY_SAVE, str(stage), timeout=120, preexec_fn=unprivileged())
    assert proc.returncode == 0, proc.stderr[-2000:]
    message = proc.stdout.strip().splitlines()[-1]
    assert "could not write the resume checkpoint" in message, proc.stdout
    assert "Free disk space" not in message and f"Make {stage / 'checkpoints'} writable" in message

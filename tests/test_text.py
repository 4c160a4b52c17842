import tensorflow as tf

from etenet_tf.text import tokenizer, vocabulary


def test_normalisation_and_words():
    words = tokenizer.words_of(["A Man's  DOG!", "Ça va"])
    assert words == [["a", "man", "s", "dog"], ["ça", "va"]]


def test_vocabulary_min_count_and_round_trip(tmp_path):
    vocab = vocabulary.Vocabulary.build([["a", "dog"], ["a", "cat"]], min_count=2)
    assert vocab.tokens == list(vocabulary.SPECIAL_TOKENS) + ["a"]
    vocab.save(str(tmp_path / "v.txt"))
    assert vocabulary.Vocabulary.load(str(tmp_path / "v.txt")).tokens == vocab.tokens


def test_encode_then_detokenise_with_core_ops():
    vocab = vocabulary.Vocabulary.build(tokenizer.words_of(["a red circle moves left"]))
    tok = tokenizer.CaptionTokenizer(vocab, 6)
    ids = tok(tf.constant(["a red circle", "a red circle moves left fast", "a purple thing"]))
    assert ids.shape == (3, 6)
    assert ids[0, 0] == vocabulary.START_ID and ids[1, -1] == vocabulary.END_ID
    text = vocabulary.ids_to_text(ids[:, 1:], tf.constant(vocab.tokens)).numpy()
    assert [t.decode() for t in text] == ["a red circle", "a red circle moves", "a"]


import pytest  # noqa: E402


@pytest.mark.parametrize("content,match", [
    ("", "is empty"),
    ("<pad>\n<unk>\n<start>\n<end>\na\nb\na\n", "repeats the token.* a;"),
    ("a\nb\n", "does not start with"),
])
def test_a_damaged_vocabulary_file_is_a_clear_error(tmp_path, content, match):
    path = tmp_path / "vocab.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(vocabulary.VocabularyError, match=match) as error:
        vocabulary.Vocabulary.load(str(path))
    assert str(path) in str(error.value) and "--stage=prepare" in str(error.value)

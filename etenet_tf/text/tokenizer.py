"""Caption normalisation and tokenisation with TensorFlow Text.

Normalisation: Unicode NFKC + case folding (tf_text), every character that
is not a letter or a digit becomes a space, then whitespace tokenisation.
"a Man's  dog!" -> ["a", "man", "s", "dog"]. The same graph runs when the
vocabulary is built (prepare), in the tf.data pipeline and for validation
references, so the three always agree.

Scripts written without spaces between words (Chinese and Japanese: CJK
ideographs, hiragana, katakana; `SPACELESS_CHARACTERS`) are tokenised one
character per token, as CIDEr is computed on Chinese captions (VATEX):
"一个男人在跑步" -> ["一", "个", "男", "人", "在", "跑", "步"]. Korean is
written with spaces between words and is tokenised by them, like English.
The CIDEr-D document frequencies (`ngrams`), the in-graph scst reward and
`evaluate`'s pycocoevalcap scores (`space_out` before the PTB tokenizer)
all see these tokens, for references and generated captions alike.
"""

import re
import unicodedata

import tensorflow as tf
import tensorflow_text as tf_text

from etenet_tf.text import vocabulary as vocab_lib

# Code point ranges (RE2 and Python `re` syntax) of the characters that are
# one token each: hiragana, katakana (with its prolonged sound mark),
# katakana phonetic extensions, the ideographic iteration and closing marks
# and number zero, CJK ideographs (extension A, the unified block, the
# compatibility block, extensions B-H).
_SPACELESS_RANGES = ((0x3005, 0x3007), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x31F0, 0x31FF),
                     (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x323AF))
SPACELESS_CHARACTERS = "".join(f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in _SPACELESS_RANGES)
_SPACELESS_PY = re.compile(
    "([" + "".join(f"{chr(a)}-{chr(b)}" for a, b in _SPACELESS_RANGES) + "])")
# CJK symbols and punctuation, but the marks above that are letters
_CJK_PUNCTUATION_PY = re.compile("[\u3000-\u3004\u3008-\u303f\u30fb]")


def normalize(captions):
    """Normalises a string tensor of any shape; returns the same shape."""
    text = tf_text.normalize_utf8(captions, "NFKC")
    text = tf_text.case_fold_utf8(text)
    text = tf.strings.regex_replace(text, r"[^\p{L}\p{N}]+", " ")
    # a character of a script without spaces is a word of its own
    text = tf.strings.regex_replace(text, f"([{SPACELESS_CHARACTERS}])", r" \1 ")
    text = tf.strings.regex_replace(text, " {2,}", " ")
    return tf.strings.strip(text)


def space_out(text):
    """Python: `text` with a space around every character of a script
    written without spaces (as `normalize` splits them), for tokenizers that
    split on spaces only (pycocoevalcap's PTB tokenizer). Text holding such
    characters is NFKC-normalised (full-width punctuation becomes ASCII) and
    loses its CJK punctuation (。「」、...); other text is returned unchanged."""
    if not _SPACELESS_PY.search(text):
        return text
    text = _CJK_PUNCTUATION_PY.sub(" ", unicodedata.normalize("NFKC", text))
    return " ".join(_SPACELESS_PY.sub(r" \1 ", text).split())


_WHITESPACE = tf_text.WhitespaceTokenizer()


def split_words(captions):
    """Normalised words of a `[n]` string tensor, as a ragged `[n, None]`."""
    return _WHITESPACE.tokenize(normalize(captions))


def words_of(captions):
    """Python helper: list of word lists for a list of caption strings."""
    if not captions:
        return []
    ragged = split_words(tf.constant(list(captions)))
    return [[w.decode("utf-8") for w in row] for row in ragged.to_list()]


class CaptionTokenizer:
    """Maps captions to fixed-length id sequences `<start> w1 .. wn <end> <pad>..`.

    Args:
        vocabulary: a `Vocabulary`.
        max_length: total sequence length including `<start>` and `<end>`;
            longer captions are truncated (their `<end>` kept).
    """

    def __init__(self, vocabulary, max_length):
        if max_length < 3:
            raise ValueError("max_length must be >= 3")
        self.vocabulary = vocabulary
        self.max_length = max_length
        self._table = vocabulary.lookup_table()

    def __call__(self, captions):
        """string `[n]` -> int32 `[n, max_length]`."""
        words = split_words(captions)
        ids = self._table.lookup(words)[:, : self.max_length - 2]
        column = tf.stack([ids.nrows(), 1])
        start = tf.fill(column, tf.constant(vocab_lib.START_ID, tf.int64))
        end = tf.fill(column, tf.constant(vocab_lib.END_ID, tf.int64))
        full = tf.concat([start, ids, end], axis=1)
        dense = full.to_tensor(default_value=vocab_lib.PAD_ID, shape=[None, self.max_length])
        return tf.cast(dense, tf.int32)

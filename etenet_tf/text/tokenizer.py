"""Caption normalisation and tokenisation with TensorFlow Text.

Normalisation: Unicode NFKC + case folding (tf_text), every character that
is not a letter or a digit becomes a space, then whitespace tokenisation.
"a Man's  dog!" -> ["a", "man", "s", "dog"]. The same graph runs when the
vocabulary is built (prepare), in the tf.data pipeline and for validation
references, so the three always agree.
"""

import tensorflow as tf
import tensorflow_text as tf_text

from etenet_tf.text import vocabulary as vocab_lib


def normalize(captions):
    """Normalises a string tensor of any shape; returns the same shape."""
    text = tf_text.normalize_utf8(captions, "NFKC")
    text = tf_text.case_fold_utf8(text)
    text = tf.strings.regex_replace(text, r"[^\p{L}\p{N}]+", " ")
    return tf.strings.strip(text)


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

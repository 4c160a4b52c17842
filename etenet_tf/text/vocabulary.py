"""Caption vocabulary: special tokens, min-count building, save/load, and
id -> text detokenisation with core TensorFlow ops only (it runs inside the
exported serving graph, where TF Serving's own, older TF Text ops must not
be needed).
"""

import collections
import os

import tensorflow as tf

from etenet_tf import files
from etenet_tf.errors import MissingInputError, UserError

PAD, UNK, START, END = "<pad>", "<unk>", "<start>", "<end>"
SPECIAL_TOKENS = (PAD, UNK, START, END)
PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3


class VocabularyError(UserError):
    """A vocabulary file is unusable; the message names it and the fix."""


class Vocabulary:
    """An ordered token list whose first four entries are the special tokens.

    Args:
        tokens: all tokens, starting with `SPECIAL_TOKENS`.
    """

    def __init__(self, tokens):
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with {SPECIAL_TOKENS}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("the vocabulary has duplicate tokens")
        self.tokens = tokens

    def __len__(self):
        return len(self.tokens)

    @classmethod
    def build(cls, tokenized_captions, min_count=1):
        """Builds a vocabulary from tokenised captions.

        Args:
            tokenized_captions: iterable of lists of word strings.
            min_count: words seen fewer times become `<unk>`.

        Returns:
            A `Vocabulary` ordered by decreasing count, then alphabetically.
        """
        counts = collections.Counter(w for caption in tokenized_captions for w in caption)
        words = sorted(
            (w for w, c in counts.items() if c >= min_count and w not in SPECIAL_TOKENS),
            key=lambda w: (-counts[w], w),
        )
        return cls(list(SPECIAL_TOKENS) + words)

    def save(self, path):
        """Writes one token per line, atomically."""
        files.write_text(path, "\n".join(self.tokens) + "\n")

    @classmethod
    def load(cls, path):
        """Reads a vocabulary file.

        Raises:
            FileNotFoundError: there is none.
            VocabularyError: it is empty, not UTF-8, lacks the special
                tokens or repeats a token.
        """
        if not os.path.isfile(path):
            raise MissingInputError(
                f"vocabulary not found: {path} (run --stage=prepare first)"
            )
        fix = ("delete it and re-run --stage=prepare with the same flags to write it again "
               "(a model trained with it keeps its own copy in model_config.json)")
        try:
            with open(path, encoding="utf-8") as f:
                tokens = [line.rstrip("\n") for line in f if line.rstrip("\n")]
        except (OSError, UnicodeDecodeError) as e:
            raise VocabularyError(f"{path} is unreadable ({e}); {fix}") from None
        if not tokens:
            raise VocabularyError(f"{path} is empty; {fix}")
        duplicates = sorted(t for t, n in collections.Counter(tokens).items() if n > 1)
        if duplicates:
            raise VocabularyError(f"{path} repeats the token(s) {', '.join(duplicates[:5])}; "
                                  f"{fix}")
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise VocabularyError(f"{path} does not start with the tokens "
                                  f"{' '.join(SPECIAL_TOKENS)}; {fix}")
        return cls(tokens)

    def ids(self, words):
        """Word strings -> ids (`<unk>` for words outside the vocabulary)."""
        index = self.__dict__.setdefault("_index", {t: i for i, t in enumerate(self.tokens)})
        return [index.get(w, UNK_ID) for w in words]

    def lookup_table(self):
        """A `tf.lookup.StaticHashTable` word -> id with `<unk>` as default."""
        return tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.tokens), tf.range(len(self.tokens), dtype=tf.int64)
            ),
            default_value=UNK_ID,
        )


def ids_to_text(ids, tokens):
    """Joins token ids into captions, stopping at the first `<end>`.

    Core TF ops only. Special tokens are dropped.

    Args:
        ids: int tensor `[batch, length]`.
        tokens: string tensor `[vocabulary_size]`.

    Returns:
        string tensor `[batch]`.
    """
    ids = tf.convert_to_tensor(ids)
    ended = tf.cumsum(tf.cast(tf.equal(ids, END_ID), tf.int32), axis=1) > 0
    keep = tf.logical_and(tf.logical_not(ended), ids >= len(SPECIAL_TOKENS))
    words = tf.ragged.boolean_mask(tf.gather(tokens, ids), keep)
    return tf.strings.reduce_join(words, axis=1, separator=" ")

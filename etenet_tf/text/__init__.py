"""Captions as tokens: the vocabulary and the TF Text tokenizer."""

from etenet_tf.text.tokenizer import CaptionTokenizer, normalize, split_words, words_of
from etenet_tf.text.vocabulary import (
                                       END_ID,
                                       PAD_ID,
                                       SPECIAL_TOKENS,
                                       START_ID,
                                       UNK_ID,
                                       Vocabulary,
                                       VocabularyError,
                                       ids_to_text,
)

__all__ = ["END_ID", "PAD_ID", "SPECIAL_TOKENS", "START_ID", "UNK_ID", "CaptionTokenizer",
           "Vocabulary", "VocabularyError", "ids_to_text", "normalize", "split_words",
           "words_of"]

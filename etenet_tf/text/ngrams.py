"""n-grams of token ids as integers, and their document frequencies.

CIDEr-D weighs every n-gram (n = 1..4) by how rare it is among the
reference captions of a corpus. Over token ids (not strings) an n-gram is
one int64: `sum_i (id_i + 1) * base^i` with `base = vocabulary_size + 1`
(digits 1..V, so n-grams of different lengths never collide; a 4-gram of a
50,000-word vocabulary still fits in 63 bits). The same code runs in numpy
here (document frequencies, computed once per training set) and in the
TensorFlow reward (`etenet_tf.evaluation.cider`).
"""

import io

import numpy as np

from etenet_tf import files

FREQUENCIES_FILE = "cider_df.npz"

MAX_N = 4
MAX_VOCABULARY = 50_000  # (V + 1)^4 must stay below 2^63


def ngram_base(vocabulary_size):
    """The radix of the n-gram codes for a vocabulary size."""
    if vocabulary_size >= MAX_VOCABULARY:
        raise ValueError(f"n-gram codes need a vocabulary under {MAX_VOCABULARY} tokens")
    return vocabulary_size + 1


def ngram_codes(ids, n, base):
    """The codes of every n-gram of one id sequence, in order."""
    ids = np.asarray(ids, np.int64) + 1
    if len(ids) < n:
        return np.zeros([0], np.int64)
    codes = np.zeros(len(ids) - n + 1, np.int64)
    for j in range(n):
        codes += ids[j:len(ids) - n + 1 + j] * base ** j
    return codes


def document_frequencies(documents, vocabulary_size, max_n=MAX_N):
    """How many documents contain each n-gram (pycocoevalcap's `df`).

    Args:
        documents: one list per document (video) of reference id sequences
            (its captions, as word ids).
        vocabulary_size: the vocabulary's size.
        max_n: longest n-gram.

    Returns:
        `(codes int64 [G], counts int64 [G], number of documents)`.
    """
    base = ngram_base(vocabulary_size)
    counts = {}
    for captions in documents:
        seen = set()
        for ids in captions:
            for n in range(1, max_n + 1):
                seen.update(ngram_codes(ids, n, base).tolist())
        for code in seen:
            counts[code] = counts.get(code, 0) + 1
    codes = np.fromiter(counts.keys(), np.int64, len(counts))
    values = np.fromiter(counts.values(), np.int64, len(counts))
    order = np.argsort(codes)
    return codes[order], values[order], len(documents)


def caption_frequencies(captions_by_video, vocabulary, max_n=MAX_N):
    """`document_frequencies` of raw captions, normalised and tokenised as
    training captions are (one document per video)."""
    from etenet_tf.text.tokenizer import words_of
    documents = [[vocabulary.ids(words) for words in words_of(list(captions))]
                 for captions in captions_by_video]
    return document_frequencies(documents, len(vocabulary), max_n)


def save_frequencies(path, frequencies, vocabulary):
    """Writes `(codes, counts, documents)` atomically, with the vocabulary
    they were computed for (codes are ids of that vocabulary)."""
    codes, counts, documents = frequencies
    buffer = io.BytesIO()
    np.savez(buffer, codes=codes, counts=counts, documents=documents,
             vocabulary=np.array(vocabulary.tokens))
    files.write_bytes(path, buffer.getvalue())


def load_frequencies(path, vocabulary):
    """`(codes, counts, documents)` from `save_frequencies`, or None when the
    file is missing or belongs to another vocabulary."""
    if not files.isfile(path):
        return None
    with np.load(io.BytesIO(files.read_bytes(path))) as data:
        if data["vocabulary"].tolist() != list(vocabulary.tokens):
            return None
        return data["codes"], data["counts"], int(data["documents"])

"""CIDEr-D of every caption against its references, in the TensorFlow graph.

The reward of self-critical training: computed for K sampled captions of
every clip at every step, so it runs as tensor ops on token ids rather
than in Python. It is pycocoevalcap's CIDEr-D (`pycocoevalcap.cider`),
caption by caption: n-grams n = 1..4, tf-idf weights
`tf(g) * (log(D) - log(max(1, df(g))))`, per n the clipped cosine
`sum_g min(v_h(g), v_r(g)) * v_r(g) / (|v_h| |v_r|)`, a Gaussian length
penalty `exp(-delta^2 / (2 sigma^2))` with sigma 6 (delta counted in
bigrams, as pycocoevalcap does), the mean over n and over the references,
times 10.

Where it differs from pycocoevalcap's corpus-level `Cider().compute_score`:

- document frequencies and `D` come from a fixed corpus, the training
  split's references (computed once, `text.ngrams.document_frequencies`),
  not from the references of the captions being scored: a reward must not
  depend on which clips share a batch. With the same frequencies the
  per-caption scores are equal (tested to 1e-6);
- it works on word ids, so two words outside the vocabulary are both
  `<unk>` and match each other;
- optionally (`include_end`, on for training) `<end>` counts as a last
  word of every caption and reference, so that a caption cut short or
  running on is penalised through its n-grams, as self-critical training
  practice recommends.
"""

import numpy as np
import tensorflow as tf

from etenet_tf.text.ngrams import MAX_N, ngram_base
from etenet_tf.text.vocabulary import END_ID, PAD_ID


class CiderD:
    """CIDEr-D scorer over token ids.

    Args:
        codes, counts, num_documents: document frequencies
            (`text.ngrams.document_frequencies`).
        vocabulary_size: the vocabulary's size (the n-gram code radix).
        sigma: the length penalty's width.
        include_end: count `<end>` as a word.
    """

    def __init__(self, codes, counts, num_documents, vocabulary_size, *, sigma=6.0,
                 include_end=True):
        self.base = ngram_base(vocabulary_size)
        self.sigma = float(sigma)
        self.include_end = include_end
        self.ref_len = float(np.log(float(num_documents)))
        # log(max(1, df)); an unseen n-gram has df 0, log 1 = 0
        self.log_df = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(np.asarray(codes, np.int64)),
                tf.constant(np.log(np.maximum(np.asarray(counts, np.float64), 1.0)),
                            tf.float32)),
            default_value=0.0)

    def _words(self, ids):
        """`(ids int64, lengths [..])`: the words of each sequence (up to its
        first `<end>`, which is a word with `include_end`) and their count."""
        ids = tf.cast(ids, tf.int64)
        is_end = tf.equal(ids, END_ID)
        before_end = tf.equal(tf.cumsum(tf.cast(is_end, tf.int32), axis=-1, exclusive=True), 0)
        words = tf.logical_and(before_end, tf.not_equal(ids, PAD_ID))
        if not self.include_end:
            words = tf.logical_and(words, tf.logical_not(is_end))
        lengths = tf.reduce_sum(tf.cast(words, tf.int32), axis=-1)
        return ids, lengths

    def _ngrams(self, ids, lengths, n):
        """`(codes [.., L - n + 1], valid mask)` of the n-grams of each sequence."""
        width = ids.shape[-1] - n + 1
        codes = tf.zeros_like(ids[..., :width])
        for j in range(n):
            codes += (ids[..., j:j + width] + 1) * self.base ** j
        valid = tf.range(width) < (lengths - n + 1)[..., None]
        return codes, valid

    def _idf(self, codes):
        return self.ref_len - self.log_df.lookup(codes)

    def __call__(self, candidates, references):
        """CIDEr-D of each candidate.

        Args:
            candidates: int `[N, L]` token ids (`<pad>` after `<end>`).
            references: int `[N, R, L2]` token ids; references with no word
                (padding rows) are not counted.

        Returns:
            float32 `[N]`.
        """
        hyp, hyp_len = self._words(candidates)
        ref, ref_len = self._words(references)
        hyp_f = tf.cast(hyp_len, tf.float32)
        ref_f = tf.cast(ref_len, tf.float32)
        # the length penalty counts bigrams, as pycocoevalcap's `length` does
        delta = (tf.maximum(hyp_f - 1.0, 0.0)[:, None] - tf.maximum(ref_f - 1.0, 0.0))
        penalty = tf.exp(-tf.square(delta) / (2.0 * self.sigma ** 2))
        total = tf.zeros_like(delta)
        for n in range(1, MAX_N + 1):
            h, h_valid = self._ngrams(hyp, hyp_len, n)          # [N, P]
            r, r_valid = self._ngrams(ref, ref_len, n)          # [N, R, Q]
            h_valid_f, r_valid_f = tf.cast(h_valid, tf.float32), tf.cast(r_valid, tf.float32)
            # term frequencies, per position (each position holds one n-gram)
            h_tf = tf.einsum("npq,nq->np", tf.cast(tf.equal(h[:, :, None], h[:, None, :]),
                                                    tf.float32), h_valid_f)
            r_tf = tf.einsum("nrpq,nrq->nrp", tf.cast(tf.equal(r[..., :, None], r[..., None, :]),
                                                       tf.float32), r_valid_f)
            h_in_r = tf.einsum("nrpq,nrq->nrp", tf.cast(
                tf.equal(h[:, None, :, None], r[:, :, None, :]), tf.float32), r_valid_f)
            h_idf, r_idf = self._idf(h), self._idf(r)
            vec_h = h_tf * h_idf                                  # [N, P]
            vec_r_at_h = h_in_r * h_idf[:, None, :]               # [N, R, P]
            # a sum over distinct n-grams = a sum over positions / tf
            per_position = h_valid_f / tf.maximum(h_tf, 1.0)
            numerator = tf.reduce_sum(
                per_position[:, None, :] * tf.minimum(vec_h[:, None, :], vec_r_at_h)
                * vec_r_at_h, axis=-1)                            # [N, R]
            norm_h = tf.sqrt(tf.reduce_sum(h_valid_f * h_tf * tf.square(h_idf), axis=-1))
            norm_r = tf.sqrt(tf.reduce_sum(r_valid_f * r_tf * tf.square(r_idf), axis=-1))
            denominator = norm_h[:, None] * norm_r
            similarity = tf.math.divide_no_nan(numerator, denominator)
            total += similarity * penalty
        present = tf.cast(ref_len > 0, tf.float32)
        per_reference = total / MAX_N * present
        count = tf.maximum(tf.reduce_sum(present, axis=-1), 1.0)
        return 10.0 * tf.reduce_sum(per_reference, axis=-1) / count

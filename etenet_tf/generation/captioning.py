"""Captions from a captioner and a sampler, as compiled functions.

`generate` runs any sampler over a model's decoding step function;
`CaptionGenerator` compiles it once per input kind (frames, or cached
features) and adds the text, so validation, evaluation, the caption
stage and the export all decode the same way.
"""

import collections

import tensorflow as tf

Captions = collections.namedtuple("Captions", ["texts", "scores", "attention", "ids"])
Captions.__doc__ = """Generated captions, `n` per clip, best first.

Fields:
    texts: string `[batch, n]`.
    scores: float32 `[batch, n]` (beam search: length-normalised log-probability).
    attention: float32 `[batch, n, max_length, tokens]` (frame-major tokens).
    ids: int32 `[batch, n, max_length]`.
"""


def generate(model, features, sampler, *, max_length, **sampler_args):
    """Runs `sampler` over `model`'s decoder.

    Args:
        model: an `EtENetCaptioner` (anything with `start_decoding`).
        features: encoder features `[B, T, G, G, C]`.
        sampler: a sampler of `etenet_tf.generation.samplers`.
        max_length: most tokens per sequence.
        **sampler_args: e.g. `seed` for a `RandomSampler`.

    Returns:
        The sampler's `SampledSequences` (outputs: attention).
    """
    step_fn, state = model.start_decoding(features, sampler.rows_per_input, max_length)
    return sampler(step_fn, state, tf.shape(features)[0], max_length=max_length, **sampler_args)


class CaptionGenerator:
    """Compiled caption generation for one model and one sampler.

    Args:
        model: an `EtENetCaptioner`.
        sampler: a sampler (e.g. `DecodingConfig.sampler()`).
        max_length: most tokens per caption.
    """

    def __init__(self, model, sampler, max_length):
        self.model = model
        self.sampler = sampler
        self.max_length = max_length
        self._compiled = {}

    def captions(self, inputs, kind="frames"):
        """Captions for `inputs` (graph code; call inside a tf.function or eagerly).

        Args:
            inputs: uint8/float frames `[B, T, S, S, 3]` or features.
            kind: `"frames"` or `"features"`.
        """
        features = inputs if kind == "features" else self.model.encode(inputs)
        ids, scores, attention = generate(self.model, features, self.sampler,
                                          max_length=self.max_length)
        shape = tf.shape(ids)
        texts = tf.reshape(self.model.detokenize(tf.reshape(ids, [-1, shape[2]])), shape[:2])
        return Captions(texts, scores, attention, ids)

    def __call__(self, inputs, kind="frames"):
        """`captions` as a compiled function (traced once per input kind)."""
        if kind not in self._compiled:
            self._compiled[kind] = tf.function(lambda x: self.captions(x, kind),
                                               reduce_retracing=True)
        return self._compiled[kind](inputs)


def caption_records(videos, captions):
    """One JSON-ready record per video, as the caption stage writes them
    (one line each in `captions.jsonl`, on every runner).

    Args:
        videos: the video paths, in the order of `captions`.
        captions: a `Captions` of those videos (numpy or tensors).

    Returns:
        A list of `{"video", "caption", "score"}` dicts (the best caption),
        with `"captions": [{"caption", "score"}, ...]` (best first) when
        more than one caption per video was generated.
    """
    texts = _numpy(captions.texts)
    scores = _numpy(captions.scores)
    records = []
    for i, video in enumerate(videos):
        record = {"video": video, "caption": _text(texts[i, 0]), "score": float(scores[i, 0])}
        if texts.shape[1] > 1:
            record["captions"] = [{"caption": _text(t), "score": float(s)}
                                  for t, s in zip(texts[i], scores[i])]
        records.append(record)
    return records


def error_record(video, reason):
    """The record of a video that could not be captioned."""
    return {"video": video, "error": str(reason)}


def _numpy(x):
    return x.numpy() if hasattr(x, "numpy") else x


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)

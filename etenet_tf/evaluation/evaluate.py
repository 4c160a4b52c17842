"""Scoring a model on prepared records: beam-search captions, then
BLEU/METEOR/ROUGE-L/CIDEr-D and, when the clips have known attributes,
attribute accuracy (`acc_<attribute>`, `acc_all`)."""

from etenet_tf.data import pipeline
from etenet_tf.evaluation import attributes as attributes_lib
from etenet_tf.evaluation import metrics as metrics_lib
from etenet_tf.evaluation import predict
from etenet_tf.generation import CaptionGenerator

# what a scores dict holds beside the scores: counts and the beam size
COUNTS = ("videos", "scored_videos", "beam_size")


def evaluate_model(model, files, *, image_size, decoding, batch_size, attributes=(None, None),
                   progress=None, kind="frames"):
    """Captions every clip of `files` and scores the captions.

    Args:
        model: an `EtENetCaptioner`.
        files: frame record shards (one split), or feature record shards
            with `kind="features"`.
        image_size: the frame side the model takes.
        decoding: a `DecodingConfig` (the best caption of each clip is scored).
        batch_size: clips per batch.
        attributes: `(truth, spec)` of `etenet_tf.data.attributes`.
        progress: optional callable(videos) after each captioned batch.
        kind: `"frames"`, or `"features"` for records of encoder features
            (`records.features_example`): the encoder is not run.

    Returns:
        `(predictions {id: caption}, scores)`; `scores` holds the caption
        metrics over the clips that have references, attribute accuracy
        over the clips that have attributes, and `COUNTS`: `videos`,
        `scored_videos`, `beam_size`.
    """
    ds = pipeline.eval_dataset(files, kind, batch_size,
                               image_size=image_size if kind == "frames" else None)
    generator = CaptionGenerator(model, decoding.sampler(), decoding.max_decode_length)
    predictions, references = predict.predict_dataset(model, ds, kind, generator=generator,
                                                        progress=progress)
    scored = {k: v for k, v in references.items() if v}
    scores = metrics_lib.score(scored, {k: predictions[k] for k in scored}) if scored else {}
    truth, spec = attributes
    if truth:
        scores.update(attributes_lib.accuracy(predictions, truth, spec))
    scores.update(videos=len(predictions), scored_videos=len(scored),
                  beam_size=decoding.beam_size)
    return predictions, scores

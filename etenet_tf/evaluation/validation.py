"""Validation during training: the scores after each epoch and what
TensorBoard shows of them.

`make_validator` gives the training loop (`training.loop.Trainer.fit`) its
per-epoch callable: greedy captions of the val split scored with
BLEU/ROUGE-L/CIDEr on the package's own tokenisation (no JVM per epoch),
attribute accuracy when the clips have known attributes, and attention
pictures of a few preview clips. `write_summaries` writes one epoch's
scores, its caption table and its pictures to a TensorBoard writer.
"""

import tensorflow as tf

from etenet_tf.data import pipeline, records
from etenet_tf.evaluation import attention_image, predict
from etenet_tf.evaluation import attributes as attributes_lib
from etenet_tf.evaluation import metrics as metrics_lib
from etenet_tf.generation import CaptionGenerator, GreedySampler

# what `make_validator` scores without Java (plus acc_* with attributes)
VALIDATION_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr")


def known_metrics(attribute_spec=None):
    """The scores validation computes: the caption metrics, and `acc_*` of
    each attribute (and `acc_all`) when the clips have attributes."""
    known = list(VALIDATION_METRICS)
    if attribute_spec:
        known += [f"acc_{name}" for name in attribute_spec] + ["acc_all"]
    return known


def preview_clips(records_dir, image_size, count=2):
    """`(ids, frames uint8 [N, T, S, S, 3])` of the first `count` val clips:
    the clips whose attention pictures TensorBoard shows every epoch."""
    ds = pipeline.eval_dataset(records.list_shards(records_dir, "val"), "frames", count,
                               image_size=image_size)
    batch = next(iter(ds))
    return [v.decode("utf-8") for v in batch["video_id"].numpy()], batch["frames"]


def make_validator(model, val_dataset, kind, *, max_length, preview=None, num_samples=5,
                   attributes=None):
    """Validation callable for `Trainer.fit`.

    Args:
        model: the captioner.
        val_dataset: `pipeline.eval_dataset` of the val split.
        kind: `"frames"` or `"features"`.
        max_length: longest caption generated.
        preview: optional (ids, frames uint8 [N, T, S, S, 3]) for pictures.
        num_samples: captions shown in TensorBoard.
        attributes: optional `(truth, spec)` of `etenet_tf.data.attributes`:
            adds attribute accuracy (`acc_*`) to the scores.

    Returns:
        callable(epoch) -> `(scores, samples)`; samples are `(id, caption,
        references, picture or None)`, the pictured videos first.
    """
    # one greedy generator for every epoch: its compiled function is traced once
    generator = CaptionGenerator(model, GreedySampler(), max_length)

    def validate(epoch):
        predictions, references = predict.predict_dataset(
            model, val_dataset, kind, normalize_references=True, generator=generator)
        scored = {k: v for k, v in references.items() if v}
        scores = {}
        if scored:
            scores = metrics_lib.score(
                scored, {k: predictions[k] for k in scored}, tokenize=False, meteor=False
            )
        scores.pop("METEOR", None)
        if attributes and attributes[0]:
            scores.update(attributes_lib.accuracy(predictions, *attributes))
        pictures = {}
        if preview is not None:
            ids, frames = preview
            captions, _, attention, _ = generator(frames, "frames")
            for vid, clip, caption, att in zip(ids, frames, captions[:, 0].numpy(),
                                               attention[:, 0].numpy()):
                words = caption.decode("utf-8").split()
                pictures[vid] = attention_image.attention_image(clip, words + ["<end>"], att)
        # the pictured videos first, then others up to num_samples
        shown = list(pictures) + [v for v in sorted(predictions) if v not in pictures]
        samples = [(vid, predictions.get(vid, ""), references.get(vid, []), pictures.get(vid))
                   for vid in shown[:max(num_samples, len(pictures))]]
        return scores, samples

    return validate


def caption_table(samples, references_shown=3):
    """A Markdown table of `samples` (TensorBoard's text plugin renders it):
    video, generated caption, its first references."""
    rows = ["| video | generated | references |", "|---|---|---|"]
    for vid, caption, refs, _ in samples:
        rows.append(f"| {vid} | {caption} | {' / '.join(refs[:references_shown])} |")
    return "\n".join(rows)


def write_summaries(writer, step, seconds, scores, samples):
    """One epoch's validation in TensorBoard: `metrics/<score>` scalars,
    `epoch_seconds`, the `captions` table and `attention/<i>` pictures."""
    with writer.as_default(step=step):
        for name, value in scores.items():
            if value is not None:
                tf.summary.scalar(f"metrics/{name}", value)
        tf.summary.scalar("epoch_seconds", seconds)
        tf.summary.text("captions", caption_table(samples))
        pictures = [p for *_, p in samples if p is not None]
        for i, picture in enumerate(pictures):
            tf.summary.image(f"attention/{i}", picture[None], max_outputs=1)

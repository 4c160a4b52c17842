"""Caption generation over an evaluation dataset."""

import tensorflow as tf

from etenet_tf.text import tokenizer as tokenizer_lib


def predict_dataset(model, dataset, kind, *, generator, normalize_references=False,
                    progress=None):
    """Captions every video of an `eval_dataset`.

    Args:
        model: an `EtENetCaptioner`.
        dataset: batches from `pipeline.eval_dataset`.
        kind: `"frames"` or `"features"`.
        generator: a `CaptionGenerator` (reused, its compiled function is
            traced once); the best caption of each clip is kept.
        normalize_references: return references normalised by the
            package's tokenizer (for Java-free validation scoring).
        progress: optional callable(videos) after each batch (how many
            it held).

    Returns:
        `(predictions {id: caption}, references {id: [captions]})`.
    """
    predictions, references = {}, {}
    for batch in dataset:
        captions = generator(batch[kind], kind).texts[:, 0].numpy()
        refs = batch["references"]
        if normalize_references:
            refs = tf.reshape(tokenizer_lib.normalize(tf.reshape(refs, [-1])), tf.shape(refs))
        for vid, caption, video_refs in zip(batch["video_id"].numpy(), captions, refs.numpy()):
            vid = vid.decode("utf-8")
            predictions[vid] = caption.decode("utf-8")
            references[vid] = [r.decode("utf-8") for r in video_refs if r]
        if progress:
            progress(len(captions))
    return predictions, references

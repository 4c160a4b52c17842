"""Caption generation over an evaluation dataset."""

import tensorflow as tf

from etenet_tf.text import tokenizer as tokenizer_lib


def generation_function(model, kind, beam_size, max_length, length_penalty):
    """A tf.function inputs -> (captions, scores, attention, ids), cached per
    settings on the model so repeated validation does not retrace."""
    cache = model.__dict__.setdefault("_etenet_generate_fns", {})
    key = (kind, beam_size, max_length, float(length_penalty))
    if key not in cache:
        @tf.function(reduce_retracing=True)
        def generate(inputs):
            features = inputs if kind == "features" else model.encode(inputs)
            ids, scores, attention = model.generate(
                features, beam_size=beam_size, max_length=max_length,
                length_penalty=length_penalty,
            )
            return model.detokenize(ids), scores, attention, ids
        cache[key] = generate
    return cache[key]


def predict_dataset(model, dataset, kind, *, beam_size=1, max_length=20, length_penalty=0.6,
                    normalize_references=False):
    """Captions every video of an `eval_dataset`.

    Args:
        model: an `EtENetCaptioner`.
        dataset: batches from `pipeline.eval_dataset`.
        kind: `"frames"` or `"features"`.
        beam_size, max_length, length_penalty: search settings.
        normalize_references: return references normalised by the
            package's tokenizer (for Java-free validation scoring).

    Returns:
        `(predictions {id: caption}, references {id: [captions]})`.
    """
    generate = generation_function(model, kind, beam_size, max_length, length_penalty)
    predictions, references = {}, {}
    for batch in dataset:
        captions = generate(batch[kind])[0].numpy()
        refs = batch["references"]
        if normalize_references:
            refs = tf.reshape(tokenizer_lib.normalize(tf.reshape(refs, [-1])), tf.shape(refs))
        for vid, caption, video_refs in zip(batch["video_id"].numpy(), captions, refs.numpy()):
            vid = vid.decode("utf-8")
            predictions[vid] = caption.decode("utf-8")
            references[vid] = [r.decode("utf-8") for r in video_refs if r]
    return predictions, references

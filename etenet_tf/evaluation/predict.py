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
                    normalize_references=False, keep=0):
    """Captions every video of an `eval_dataset`.

    Args:
        model: an `EtENetCaptioner`.
        dataset: batches from `pipeline.eval_dataset`.
        kind: `"frames"` or `"features"`.
        beam_size, max_length, length_penalty: search settings.
        normalize_references: return references normalised by the
            package's tokenizer (for Java-free validation scoring).
        keep: number of leading videos whose inputs and attention are
            also returned (for pictures).

    Returns:
        `(predictions {id: caption}, references {id: [captions]},
        kept [(id, inputs, caption, attention)])`.
    """
    generate = generation_function(model, kind, beam_size, max_length, length_penalty)
    predictions, references, kept = {}, {}, []
    for batch in dataset:
        captions, _, attention, _ = generate(batch[kind])
        ids = [v.decode("utf-8") for v in batch["video_id"].numpy()]
        refs = batch["references"]
        if normalize_references:
            flat = tokenizer_lib.normalize(tf.reshape(refs, [-1]))
            refs = tf.reshape(flat, tf.shape(refs))
        for i, vid in enumerate(ids):
            predictions[vid] = captions[i].numpy().decode("utf-8")
            references[vid] = [r.decode("utf-8") for r in refs[i].numpy() if r]
            if len(kept) < keep:
                kept.append((vid, batch[kind][i].numpy(), predictions[vid], attention[i].numpy()))
    return predictions, references, kept

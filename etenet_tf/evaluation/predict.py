"""Caption generation over an evaluation dataset."""

import tensorflow as tf

from etenet_tf.generation import BeamSampler, CaptionGenerator, GreedySampler
from etenet_tf.text import tokenizer as tokenizer_lib


def caption_generator(model, beam_size, max_length, length_penalty):
    """A `CaptionGenerator` for beam search (beam 1: greedy)."""
    sampler = (GreedySampler(length_penalty) if beam_size == 1
               else BeamSampler(beam_size, length_penalty))
    return CaptionGenerator(model, sampler, max_length)


def generation_function(model, kind, beam_size, max_length, length_penalty):
    """A compiled inputs -> (captions [B], scores [B], attention [B, L, N],
    ids [B, L]) function: the best caption of each clip."""
    generator = caption_generator(model, beam_size, max_length, length_penalty)

    def generate(inputs):
        texts, scores, attention, ids = generator(inputs, kind)
        return texts[:, 0], scores[:, 0], attention[:, 0], ids[:, 0]

    return generate


def predict_dataset(model, dataset, kind, *, beam_size=1, max_length=20, length_penalty=0.6,
                    normalize_references=False, generator=None):
    """Captions every video of an `eval_dataset`.

    Args:
        model: an `EtENetCaptioner`.
        dataset: batches from `pipeline.eval_dataset`.
        kind: `"frames"` or `"features"`.
        beam_size, max_length, length_penalty: search settings.
        normalize_references: return references normalised by the
            package's tokenizer (for Java-free validation scoring).
        generator: a `CaptionGenerator` to reuse (its compiled function
            is traced once), instead of the search settings.

    Returns:
        `(predictions {id: caption}, references {id: [captions]})`.
    """
    generator = generator or caption_generator(model, beam_size, max_length, length_penalty)
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
    return predictions, references

"""Attribute accuracy: does a caption name what is really in the clip?

n-gram metrics reward the words a caption shares with its references; on
template-like data ("a ... is moving ...") a caption scores well while
naming the wrong object or direction. When clips come with known
attributes (the shapes data: colour, shape, direction; a custom dataset:
an `attributes` object per clip), a caption is right about an attribute
when it mentions the true value and no other value of that attribute.

Values are found as whole-word phrases, tolerant of the paraphrases the
captions use: each value has a list of phrases (`"up"`: "up", "upwards",
"upward"), and a caption word also matches a phrase word followed by `s`
or `es` (plurals). The phrases and every clip's values come from the
attribute file that `prepare` writes (`etenet_tf.data.attributes`).
"""

import re

from etenet_tf.text import tokenizer

ALL = "all"  # the "all attributes right" entry
PREFIX = "acc_"  # score keys: acc_<attribute>, acc_all


def _words(text):
    # Chinese and Japanese: one word per character, as the tokenizer splits them
    return re.findall(r"[^\W_]+", tokenizer.space_out(str(text)).lower())


def _phrase_in(words, phrase):
    target = _words(phrase)
    n = len(target)
    for i in range(len(words) - n + 1):
        if all(w in (t, t + "s", t + "es") for w, t in zip(words[i:i + n], target)):
            return True
    return False


def mentioned(caption, phrases_by_value):
    """The values whose phrases occur in `caption`.

    Args:
        caption: a caption string.
        phrases_by_value: `{value: [phrase, ...]}` of one attribute.

    Returns:
        A set of values.
    """
    words = _words(caption)
    return {value for value, phrases in phrases_by_value.items()
            if any(_phrase_in(words, p) for p in phrases)}


def accuracy(predictions, truth, spec):
    """Per-attribute and all-right accuracy of captions.

    Args:
        predictions: `{video_id: caption}`.
        truth: `{video_id: {attribute: value}}`; videos missing here are
            not counted.
        spec: `{attribute: {value: [phrase, ...]}}`.

    Returns:
        `{"acc_<attribute>": float, ..., "acc_all": float}` over the
        predicted videos that have attributes, or `{}` if none has.
    """
    ids = [v for v in predictions if v in truth and truth[v]]
    if not ids:
        return {}
    right = {name: 0 for name in spec}
    counted = {name: 0 for name in spec}
    all_right = 0
    for video in ids:
        ok = True
        for name, value in truth[video].items():
            if name not in spec:
                continue
            counted[name] += 1
            if mentioned(predictions[video], spec[name]) == {value}:
                right[name] += 1
            else:
                ok = False
        all_right += ok
    scores = {f"{PREFIX}{name}": right[name] / counted[name] for name in spec if counted[name]}
    scores[PREFIX + ALL] = all_right / len(ids)
    return scores

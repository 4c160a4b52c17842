"""Known attributes of clips (what is in them), stored beside the records.

`prepare` writes `attributes.json` into the records directory when the
dataset gives attributes (the shapes data always does; a custom JSONL may
give an `attributes` object per clip). Evaluation reads it to check what
captions get right (`etenet_tf.evaluation.attributes`).

Attributes named `subject`, `action`, `object`, `region` and `order` (the
scenes data gives all five; a custom JSONL may too) are role slots: the
matcher checks them where they occur in the caption's events, and `order`'s
value is a clause ("large blue square grows") or "none".
"""

import json
import os

from etenet_tf import files
from etenet_tf.files import write_json

ATTRIBUTES_FILE = "attributes.json"


def collect(examples):
    """The attribute file's content from dataset examples.

    Each example's `attributes` maps an attribute to a value, or to a list
    `[value, paraphrase, ...]` (the first entry names the value). Phrases
    of a value are the union over all examples, the value itself first.

    Args:
        examples: objects with `video_id` and `attributes` (dict or None).

    Returns:
        `{"spec": {attribute: {value: [phrases]}}, "videos": {id: {attribute:
        value}}}`, or None when no example has attributes.
    """
    spec, videos = {}, {}
    for ex in examples:
        if not ex.attributes:
            continue
        values = {}
        for name, given in ex.attributes.items():
            phrases = [given] if isinstance(given, str) else list(given)
            phrases = [str(p).strip().lower() for p in phrases if str(p).strip()]
            if not phrases:
                continue
            value = phrases[0]
            known = spec.setdefault(str(name), {}).setdefault(value, [value])
            known.extend(p for p in phrases[1:] if p not in known)
            values[str(name)] = value
        videos[ex.video_id] = values
    if not videos:
        return None
    return {"spec": spec, "videos": videos}


def write(records_dir, examples):
    """Writes `attributes.json` for `examples`; returns its path or None
    (and removes a stale file) when no example has attributes."""
    path = os.path.join(records_dir, ATTRIBUTES_FILE)
    content = collect(examples)
    if content is None:
        files.remove(path)
        return None
    write_json(path, content)
    return path


def load(records_dir):
    """`(truth, spec)` from `records_dir/attributes.json`, or `(None, None)`."""
    path = os.path.join(records_dir, ATTRIBUTES_FILE)
    if not os.path.isfile(path):
        return None, None
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return data["videos"], data["spec"]

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

Attributes named after a role in an event (`ROLE_SLOTS`: subject, action,
object, region, order; the scenes data has all five) are checked where
they occur, not only whether they occur, since a caption of several objects
names several objects:
- the caption is split into events in time order at "then", "after that",
  "afterwards", "before" ("A before B": A first) and "after" ("B after A":
  A first);
- in each event the phrases of subject/object values (noun phrases),
  actions and regions are found, longest first; noun phrases before the
  action are its subject and after it its object, swapped when the action
  phrase is passive (ends with "by": "is approached by");
- `subject`, `action`, `object` and `region` are right when the first event
  names exactly the true value (`"none"`: no object / no region named);
- `order` is what happens second: a clause in the same vocabulary ("large
  blue square grows"), right when the caption's second event has that
  subject, action and object and there is no third; `"none"`: the caption
  describes one event.
"""

import re

from etenet_tf.text import tokenizer

ALL = "all"  # the "all attributes right" entry
ROLE_SLOTS = ("subject", "action", "object", "region", "order")
NONE = "none"  # a role slot's value when the role is empty
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


class _Vocabulary:
    """The phrases of a spec's role slots, for parsing captions into events."""

    def __init__(self, spec):
        self.phrases = {}  # first word -> [(words, kind, value, passive)], longest first
        for kind, names in (("noun", ("subject", "object")), ("action", ("action",)),
                            ("region", ("region",))):
            for name in names:
                for value, phrases in spec.get(name, {}).items():
                    if value == NONE:
                        continue
                    for phrase in phrases:
                        words = tuple(_words(phrase))
                        if words:
                            self.phrases.setdefault(words[0], []).append(
                                (words, kind, value, words[-1] == "by"))
        for candidates in self.phrases.values():
            candidates.sort(key=lambda p: -len(p[0]))
        self._clauses = {}

    def _match(self, words, i):
        word = words[i]
        bases = [word] + [word[:-n] for n in (1, 2) if word.endswith("es"[2 - n:])]
        for base in bases:
            for phrase in self.phrases.get(base, ()):
                target = phrase[0]
                if len(target) <= len(words) - i and all(
                        w in (t, t + "s", t + "es") for w, t in zip(words[i:], target)):
                    return phrase
        return None

    def parsed_value(self, value):
        """The roles of an `order` value (a clause), parsed once."""
        if value not in self._clauses:
            self._clauses[value] = self.clause(_words(value))
        return self._clauses[value]

    def clause(self, words):
        """One event's roles: {"subject", "action", "object", "region"} -> sets."""
        found, i = [], 0
        while i < len(words):
            phrase = self._match(words, i)
            if phrase is None:
                i += 1
                continue
            found.append(phrase)
            i += len(phrase[0])
        event = {"subject": set(), "action": set(), "object": set(), "region": set()}
        actions = [p for p in found if p[1] == "action"]
        first = found.index(actions[0]) if actions else len(found)
        passive = bool(actions) and actions[0][3]
        for n, (_, kind, value, _) in enumerate(found):
            if kind == "noun":
                before = n < first
                event["subject" if before != passive else "object"].add(value)
            elif kind == "action" or kind == "region":
                event[kind].add(value)
        return event

    def events(self, caption):
        """The events of a caption in time order."""
        return self._split(_words(caption))

    def _split(self, words):
        for i, word in enumerate(words):
            if word in ("then", "afterwards", "before") or (
                    word == "after" and i + 1 < len(words) and words[i + 1] == "that"):
                skip = 2 if word == "after" else 1
                return self._split(words[:i]) + self._split(words[i + skip:])
            if word == "after":
                return self._split(words[i + 1:]) + self._split(words[:i])
        event = self.clause(words)
        return [event] if any(event.values()) else []


def event_parser(spec):
    """A function `caption -> [event, ...]` (time order; each event a dict
    `{"subject", "action", "object", "region"} -> set of values`) that
    parses captions as `accuracy` does, for error analysis."""
    return _Vocabulary(spec).events


def _role_right(name, value, events, vocabulary):
    """Whether parsed `events` get role slot `name` right."""
    if name == "order":
        if value == NONE:
            return len(events) == 1
        want = vocabulary.parsed_value(value)
        return len(events) == 2 and all(
            events[1][role] == want[role] for role in ("subject", "action", "object"))
    if not events:
        return False
    return events[0][name] == (set() if value == NONE else {value})


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
    vocabulary = _Vocabulary(spec) if any(name in spec for name in ROLE_SLOTS) else None
    for video in ids:
        ok = True
        events = vocabulary.events(predictions[video]) if vocabulary else None
        for name, value in truth[video].items():
            if name not in spec:
                continue
            counted[name] += 1
            if name in ROLE_SLOTS:
                good = _role_right(name, value, events, vocabulary)
            else:
                good = mentioned(predictions[video], spec[name]) == {value}
            if good:
                right[name] += 1
            else:
                ok = False
        all_right += ok
    scores = {f"{PREFIX}{name}": right[name] / counted[name] for name in spec if counted[name]}
    scores[PREFIX + ALL] = all_right / len(ids)
    return scores

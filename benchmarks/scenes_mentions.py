"""Which object does a scenes caption name, and is it in the clip at all?

    python -m benchmarks.scenes_mentions RUN/evaluation/pretrain_test_predictions.json \
        --records=RECORDS [--scenes_seed=4321] [--scenes_size=96] [--output=mentions.json]

`acc_subject` says whether a caption names the subject exactly (size,
colour and shape); it cannot say why it is wrong. This reads a predictions
file (`--stage=evaluate` writes one per split) of scenes clips, regenerates
each clip's objects from the generation seed, takes the object a caption
names as its first event's subject (parsed as `acc_subject` parses it:
"the little yellow diamond moves ...", "... is approached by the big red
cross") and counts how often its
colour, shape and size are the subject's, and how often they are those of
any object in the clip, beside what naming at random would give (a colour
drawn uniformly from the 7 is some object's in `distinct colours / 7` of a
clip's cases). A captioner that sees the objects but not which one acts
names an object of the clip but not the subject; one that does not see them
names colours and shapes at the random rate.

It also says what the captions get wrong about the events (`event_errors`):
which action the first event is given for each true action, whether a
wrong one is of the same kind (a direction for a direction, a relation to
another object for a relation, a size change for a size change) or not,
and whether the second event is there, with its actor and its action.

The clips are checked against the records' attributes (`--records`, the
records the predictions were made on): a clip whose regenerated subject,
action and region differ from them was made with another seed or size (the
unseen clips have their own seed), and is one line and exit status 2.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import scenes_probe  # noqa: E402


def scenes_event_parser():
    """`attributes.event_parser` for every object, action and region scenes
    clips can have: `caption -> [event, ...]`."""
    from etenet_tf.data import scenes
    from etenet_tf.evaluation.attributes import event_parser
    nouns = {}
    for size in scenes.SIZES:
        for colour in scenes.COLOURS:
            for shape in scenes.SHAPES:
                obj = {"size": size, "colour": colour, "shape": shape}
                nouns[scenes.noun(obj)] = scenes.noun_phrases(obj)
    return event_parser({
        "subject": nouns, "object": nouns,
        "action": {a: scenes.action_phrases(a) for a in scenes.ACTIONS},
        "region": {r: list(words) for r, words in scenes.REGION_WORDS.items()}})


def subject_parser():
    """A function `caption -> {"size", "colour", "shape"}` of the subject
    the caption's first event names, or None when it names none or several."""
    parse = scenes_event_parser()

    def subject(caption):
        events = parse(caption)
        if not events or len(events[0]["subject"]) != 1:
            return None
        size, colour, shape = next(iter(events[0]["subject"])).split()
        return {"size": size, "colour": colour, "shape": shape}
    return subject


def mentions(predictions, seed, size, truth=None):
    """The rates (fractions of all captions) of `predictions`
    (`{video file name: caption}`, scenes clips of generation `seed` and
    frame side `size`); `truth` (`{video: attributes}`, the records'), when
    given, must agree with the regenerated clips (else ValueError)."""
    from etenet_tf.data import scenes
    named_subject = subject_parser()
    parts = ("colour", "shape", "size")
    counts = {key: 0.0 for key in
              ["named"] + [f"subject {p}" for p in parts + ("all",)]
              + [f"some object's {p}" for p in ("colour", "shape", "colour and shape")]
              + [f"random: {k}" for k in ("subject colour", "subject shape",
                                          "some object's colour", "some object's shape",
                                          "some object's colour and shape")]}
    for video, caption in predictions.items():
        caption = caption if isinstance(caption, str) else caption[0]
        scene = scenes.scene_of_clip(video, seed, size)
        if truth is not None:
            expected = {k: truth.get(video, {}).get(k) for k in ("subject", "action", "region")}
            regenerated = scenes.truth_of(scene, size)
            if {k: regenerated[k] for k in expected} != expected:
                raise ValueError(f"clip {video} is not scenes seed {seed} at {size} px "
                                 "(its attributes differ): pass the --scenes_seed and "
                                 "--scenes_size the clips were generated with")
        objects = scene["objects"]
        subject = objects[scene["events"][0][0]]
        colours = {o["colour"] for o in objects}
        shapes = {o["shape"] for o in objects}
        counts["random: subject colour"] += 1 / len(scenes.COLOURS)
        counts["random: subject shape"] += 1 / len(scenes.SHAPES)
        counts["random: some object's colour"] += len(colours) / len(scenes.COLOURS)
        counts["random: some object's shape"] += len(shapes) / len(scenes.SHAPES)
        counts["random: some object's colour and shape"] += len(objects) / (
            len(scenes.COLOURS) * len(scenes.SHAPES))
        named = named_subject(caption)
        if named is None:
            continue
        counts["named"] += 1
        for part in parts:
            counts[f"subject {part}"] += named[part] == subject[part]
        counts["subject all"] += all(named[p] == subject[p] for p in parts)
        counts["some object's colour"] += named["colour"] in colours
        counts["some object's shape"] += named["shape"] in shapes
        counts["some object's colour and shape"] += any(
            named["colour"] == o["colour"] and named["shape"] == o["shape"] for o in objects)
    total = max(len(predictions), 1)
    return {"captions": len(predictions), **{k: v / total for k, v in counts.items()}}


def action_kind(action):
    """"direction", "relation" or "change" (of a scenes action value)."""
    from etenet_tf.data import scenes
    if action in scenes.RELATIONS:
        return "relation"
    return "change" if action in scenes.CHANGES else "direction"


def event_errors(predictions, seed, size):
    """What the captions get wrong about the events, by kind of event.

    Returns `{"actions": {truth: {said: count}}, "action kinds": {...},
    "second event": {...}}`: the first event's action (`said` is the value
    the caption's first event names, "none" or "several"); per kind of true
    action (direction, relation to another object, size change) the
    fraction of captions naming the right action, an action of the same
    kind, or another kind; and, for clips with a second event and without,
    the fractions of captions with as many events, and (with a second
    event) naming its actor and its action.
    """
    from etenet_tf.data import scenes
    parse = scenes_event_parser()
    actions = {a: {} for a in scenes.ACTIONS}
    kinds = {k: {"clips": 0, "right": 0, "same kind": 0, "other kind": 0, "none": 0}
             for k in ("direction", "relation", "change")}
    second = {"clips with one event": 0, "said one event": 0, "clips with two events": 0,
              "said two events": 0, "second actor right": 0, "second action right": 0}
    for video, caption in predictions.items():
        caption = caption if isinstance(caption, str) else caption[0]
        scene = scenes.scene_of_clip(video, seed, size)
        events = parse(caption)
        truth = scene["events"][0][1]
        said = events[0]["action"] if events else set()
        said = next(iter(said)) if len(said) == 1 else ("none" if not said else "several")
        actions[truth][said] = actions[truth].get(said, 0) + 1
        kind = kinds[action_kind(truth)]
        kind["clips"] += 1
        kind["right" if said == truth else "none" if said in ("none", "several") else
             "same kind" if action_kind(said) == action_kind(truth) else "other kind"] += 1
        if len(scene["events"]) == 1:
            second["clips with one event"] += 1
            second["said one event"] += len(events) == 1
            continue
        actor, action = scene["events"][1][:2]
        second["clips with two events"] += 1
        if len(events) == 2:
            second["said two events"] += 1
            second["second actor right"] += events[1]["subject"] == {
                scenes.noun(scene["objects"][actor])}
            second["second action right"] += events[1]["action"] == {action}
    for kind in kinds.values():
        for key in ("right", "same kind", "other kind", "none"):
            kind[key] /= max(kind["clips"], 1)
    for key in ("said one event", "said two events", "second actor right",
                "second action right"):
        total = "clips with one event" if key == "said one event" else "clips with two events"
        second[key] /= max(second[total], 1)
    return {"actions": actions, "action kinds": kinds, "second event": second}


EVENT_RATES = ("direction right", "relation right", "change right", "one event | one",
               "two events | two", "second actor", "second action")


def event_rates(errors):
    """`event_errors`' result as the flat rates of `EVENT_RATES`: the right
    action per kind of the first event; captions of one event for clips of
    one, of two for clips of two; the second event's actor and action right
    (fractions of the clips with two events)."""
    kinds, second = errors["action kinds"], errors["second event"]
    return {"direction right": kinds["direction"]["right"],
            "relation right": kinds["relation"]["right"],
            "change right": kinds["change"]["right"],
            "one event | one": second["said one event"],
            "two events | two": second["said two events"],
            "second actor": second["second actor right"],
            "second action": second["second action right"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", help="a predictions file of scenes clips")
    parser.add_argument("--records", required=True,
                        help="the records the predictions were made on (attributes.json)")
    scenes_probe.add_generation_arguments(parser)
    parser.add_argument("--output", default="")
    args = parser.parse_args(argv)
    try:
        with open(args.predictions, encoding="utf-8") as f:
            predictions = json.load(f)
        with open(os.path.join(args.records, "attributes.json"), encoding="utf-8") as f:
            truth = json.load(f)["videos"]
    except (OSError, ValueError, KeyError) as e:
        parser.exit(2, f"error: cannot read {e}\n")
    try:
        rates = mentions(predictions, args.scenes_seed, args.scenes_size, truth)
    except ValueError as e:
        parser.exit(2, f"error: {args.predictions}: {e}\n")
    result = {"predictions": os.path.abspath(args.predictions),
              "records": os.path.abspath(args.records),
              "scenes_seed": args.scenes_seed, **rates,
              "events": event_errors(predictions, args.scenes_seed, args.scenes_size)}
    for key, value in result.items():
        if isinstance(value, float):
            print(f"{key:40} {value:.3f}")
    for kind, rates in result["events"]["action kinds"].items():
        print(f"action, {kind:31} " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in rates.items()))
    for key, value in result["events"]["second event"].items():
        print(f"{key:40} {value:.3f}" if isinstance(value, float) else f"{key:40} {value}")
    if args.output:
        from etenet_tf.files import write_json
        write_json(args.output, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

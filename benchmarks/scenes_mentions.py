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


def subject_parser():
    """A function `caption -> {"size", "colour", "shape"}` of the subject
    the caption's first event names, or None when it names none or several."""
    from etenet_tf.data import scenes
    from etenet_tf.evaluation.attributes import event_parser
    nouns = {}
    for size in scenes.SIZES:
        for colour in scenes.COLOURS:
            for shape in scenes.SHAPES:
                obj = {"size": size, "colour": colour, "shape": shape}
                nouns[scenes.noun(obj)] = scenes.noun_phrases(obj)
    parse = event_parser({
        "subject": nouns, "object": nouns,
        "action": {a: scenes.action_phrases(a) for a in scenes.ACTIONS},
        "region": {r: list(words) for r, words in scenes.REGION_WORDS.items()}})

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
              "scenes_seed": args.scenes_seed, **rates}
    for key, value in result.items():
        if isinstance(value, float):
            print(f"{key:40} {value:.3f}")
    if args.output:
        from etenet_tf.files import write_json
        write_json(args.output, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

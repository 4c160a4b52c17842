"""Attribute accuracy: captions judged by what they name, not n-gram overlap."""

import json

import pytest

from etenet_tf.data import attributes as attributes_data
from etenet_tf.data import examples as datasets
from etenet_tf.data import shapes
from etenet_tf.data.sources.custom import load_custom
from etenet_tf.evaluation import attributes, metrics

SPEC = {
    "colour": {"red": ["red"], "blue": ["blue"]},
    "shape": {"circle": ["circle"], "square": ["square"]},
    "direction": {v: p for v, p in shapes.DIRECTION_PARAPHRASES.items()},
}


@pytest.mark.parametrize("caption,expected", [
    ("a red circle moves left", {"left"}),
    ("a red circle is moving to the left", {"left"}),
    ("the circle travels upwards across the screen", {"up"}),
    ("a circle that is red moves downwards", {"down"}),
    ("a red circle", set()),
    ("a circle moves left then right", {"left", "right"}),
    ("a red circle moves leftover", set()),  # whole words only
])
def test_directions_are_found_through_their_paraphrases(caption, expected):
    assert attributes.mentioned(caption, SPEC["direction"]) == expected


def test_plurals_match_and_substrings_do_not():
    assert attributes.mentioned("two red circles", SPEC["shape"]) == {"circle"}
    assert attributes.mentioned("a reddish squares", SPEC["colour"]) == set()


def test_accuracy_counts_only_captions_naming_exactly_the_true_value():
    truth = {
        "a": {"colour": "red", "shape": "circle", "direction": "left"},
        "b": {"colour": "blue", "shape": "square", "direction": "up"},
        "c": {"colour": "red", "shape": "square", "direction": "down"},
        "d": {"colour": "blue", "shape": "circle", "direction": "right"},
    }
    predictions = {
        "a": "a red circle is moving to the left",     # all right
        "b": "a blue circle moves upwards",             # wrong shape
        "c": "a red or blue square moves down",         # two colours: wrong colour
        "d": "a blue circle moves",                     # no direction
        "unlabelled": "a red circle moves left",        # not counted
    }
    scores = attributes.accuracy(predictions, truth, SPEC)
    assert scores == {"acc_colour": 0.75, "acc_shape": 0.75, "acc_direction": 0.75,
                      "acc_all": 0.25}


def test_no_attributes_no_scores():
    assert attributes.accuracy({"a": "x"}, {}, SPEC) == {}


def test_shapes_captions_name_their_own_attributes():
    for colour in shapes.COLOURS:
        for shape in shapes.SHAPES:
            for direction in shapes.DIRECTIONS:
                truth = shapes.attributes_for(colour, shape, direction)
                spec = {"direction": shapes.DIRECTION_PARAPHRASES,
                        "colour": {c: [c] for c in shapes.COLOURS},
                        "shape": {s: [s] for s in shapes.SHAPES}}
                values = {"colour": colour, "shape": shape, "direction": direction}
                assert truth["colour"] == colour and truth["direction"][0] == direction
                for caption in shapes.captions_for(colour, shape, direction):
                    assert attributes.accuracy({"v": caption}, {"v": values}, spec)["acc_all"] == 1


def test_custom_jsonl_attributes_are_collected_and_written(tmp_path):
    rows = [
        {"video": "a.mp4", "caption": "a dog runs up", "split": "train",
         "attributes": {"animal": "dog", "direction": ["up", "upwards"]}},
        {"video": "b.mp4", "caption": "a cat walks down", "split": "test",
         "attributes": {"animal": "cat", "direction": ["down", "downwards"]}},
        {"video": "c.mp4", "caption": "nothing known", "split": "test"},
    ]
    path = tmp_path / "ann.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = load_custom(str(path), str(tmp_path))
    written = attributes_data.write(str(tmp_path), examples)
    truth, spec = attributes_data.load(str(tmp_path))
    assert written and truth == {"a.mp4": {"animal": "dog", "direction": "up"},
                                 "b.mp4": {"animal": "cat", "direction": "down"}}
    assert spec == {"animal": {"dog": ["dog"], "cat": ["cat"]},
                    "direction": {"up": ["up", "upwards"], "down": ["down", "downwards"]}}
    scores = attributes.accuracy({"a.mp4": "a dog goes upwards", "b.mp4": "a dog walks down"},
                                 truth, spec)
    assert scores == {"acc_animal": 0.5, "acc_direction": 1.0, "acc_all": 0.5}


def test_bad_attributes_are_a_clear_error(tmp_path):
    path = tmp_path / "ann.jsonl"
    path.write_text(json.dumps({"video": "a.mp4", "caption": "x", "attributes": ["dog"]}) + "\n")
    with pytest.raises(datasets.AnnotationError, match="'attributes' must be an object"):
        load_custom(str(path), str(tmp_path))
    path.write_text(json.dumps({"video": "a.mp4", "caption": "x",
                                "attributes": {"animal": ""}}) + "\n")
    with pytest.raises(datasets.AnnotationError, match="attribute 'animal'"):
        load_custom(str(path), str(tmp_path))


def test_tables_show_attribute_columns():
    table = metrics.format_table([("finetune", {"CIDEr": 2.0, "acc_shape": 0.5, "acc_all": 0.25})],
                                 ("CIDEr",))
    head, row = table.splitlines()
    assert head.split() == ["CIDEr", "acc_shape", "acc_all"]
    assert row.split() == ["finetune", "2.0000", "0.5000", "0.2500"]


def test_event_parser_returns_the_roles_accuracy_scores():
    """`event_parser` splits a caption into events in time order and gives
    each its roles, a passive phrase swapping subject and object."""
    spec = {"subject": {"red cross": ["red cross"], "blue circle": ["blue circle"]},
            "object": {"red cross": ["red cross"], "blue circle": ["blue circle"]},
            "action": {"moves towards": ["moves towards", "is approached by"],
                       "grows": ["grows"]}}
    parse = attributes.event_parser(spec)
    events = parse("the blue circle grows after the red cross is approached by the blue circle")
    assert events == [{"subject": {"blue circle"}, "action": {"moves towards"},
                       "object": {"red cross"}, "region": set()},
                      {"subject": {"blue circle"}, "action": {"grows"}, "object": set(),
                       "region": set()}]

"""Samplers, tested with stub step functions (as keras-hub tests its
BeamSampler), and the captions of a fixed captioner kept bit for bit."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from etenet_tf.generation import (
    BeamSampler,
    CaptionGenerator,
    GreedySampler,
    RandomSampler,
    generate,
)
from etenet_tf.model.config import ModelConfig, build_captioner
from etenet_tf.text.vocabulary import END_ID, PAD_ID, SPECIAL_TOKENS, START_ID

from conftest import data_path

A, B, C = 4, 5, 6  # word ids after the special tokens
VOCABULARY_SIZE = 7


def _table(rows):
    """Next-token probabilities by previous token; unlisted rows end."""
    table = np.zeros((VOCABULARY_SIZE, VOCABULARY_SIZE), np.float32)
    table[:, END_ID] = 1.0
    for token, probs in rows.items():
        table[token] = 0.0
        for nxt, p in probs.items():
            table[token, nxt] = p
    return table


# After <start>: a 0.55, b 0.45. After a: a 0.4, c 0.3, <end> 0.3. After b: <end> 0.95,
# c 0.05. Greedy takes a, then a (0.55 * 0.4 = 0.22 so far); the best whole caption is
# "b <end>" (0.45 * 0.95 = 0.4275), which a beam of 2 keeps.
TABLE = _table({START_ID: {A: 0.55, B: 0.45}, A: {A: 0.4, C: 0.3, END_ID: 0.3},
                B: {END_ID: 0.95, C: 0.05}})


def markov_step(tokens, state, index):
    """Next-token log-probabilities from the previous token, with a nested
    state: it remembers the token fed one step earlier and counts steps.
    The step's output is that remembered token, so a sampler that mixed up
    the states of its beams would record another beam's history."""
    logits = tf.gather(tf.math.log(tf.constant(TABLE) + 1e-12), tokens)
    new_state = {"fed": {"token": tokens}, "count": state["count"] + 1}
    return logits, new_state, tf.cast(state["fed"]["token"], tf.float32)[:, None]


def _run(sampler, batch=2, max_length=5, **kwargs):
    state = {"fed": {"token": tf.fill([batch], START_ID)}, "count": tf.zeros([batch], tf.int32)}
    return sampler(markov_step, state, batch, max_length=max_length, **kwargs)


def test_beam_search_finds_the_better_caption_greedy_misses():
    greedy = _run(GreedySampler(length_penalty=0.0))
    beam = _run(BeamSampler(beam_size=2, length_penalty=0.0))
    assert greedy.ids.shape == (2, 1, 5) and beam.ids.shape == (2, 1, 5)
    assert greedy.ids[0, 0].numpy().tolist()[:2] == [A, A]
    assert beam.ids[0, 0].numpy().tolist() == [B, END_ID, PAD_ID, PAD_ID, PAD_ID]
    np.testing.assert_allclose(beam.scores.numpy(), np.log(0.45 * 0.95), rtol=1e-5)
    assert (beam.scores.numpy() > greedy.scores.numpy()).all()


def test_greedy_equals_a_beam_of_one():
    greedy = _run(GreedySampler(0.6))
    one = _run(BeamSampler(beam_size=1, length_penalty=0.6))
    assert greedy.ids.numpy().tolist() == one.ids.numpy().tolist()
    np.testing.assert_array_equal(greedy.scores.numpy(), one.scores.numpy())


def test_all_beams_come_back_best_first_with_their_own_state_history():
    result = _run(BeamSampler(beam_size=3, length_penalty=0.0, num_returned=3), max_length=4)
    ids, scores, steps = result.ids.numpy(), result.scores.numpy(), result.outputs.numpy()
    assert ids.shape == (2, 3, 4) and steps.shape == (2, 3, 4, 1)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    assert ids[0, 0].tolist() == [B, END_ID, PAD_ID, PAD_ID]
    for seq, recorded in zip(ids.reshape(-1, 4), steps.reshape(-1, 4)):
        # step t remembers the token fed at step t - 1: <start>, <start>, then the
        # caption itself, two steps late; zero after <end>
        length = seq.tolist().index(END_ID) + 1 if END_ID in seq else len(seq)
        fed = [START_ID, START_ID] + seq.tolist()
        assert recorded.tolist() == fed[:length] + [0] * (4 - length)


def test_sequences_stop_at_max_length_without_end():
    table = np.zeros_like(TABLE)
    table[:, A] = 1.0  # never ends
    log_table = tf.math.log(tf.constant(table) + 1e-12)
    result = BeamSampler(2)(lambda tokens, state, index: (tf.gather(log_table, tokens), state),
                            tf.zeros([1]), 1, max_length=3)
    assert result.ids.numpy().tolist() == [[[A, A, A]]] and result.outputs is None


def test_random_sampler_is_seeded_and_follows_the_distribution():
    sampler = RandomSampler(num_samples=400)
    first = _run(sampler, batch=1, seed=[1, 2])
    again = _run(sampler, batch=1, seed=[1, 2])
    other = _run(sampler, batch=1, seed=[3, 4])
    np.testing.assert_array_equal(first.ids.numpy(), again.ids.numpy())
    assert not np.array_equal(first.ids.numpy(), other.ids.numpy())
    ids = first.ids.numpy()[0]
    share_a = (ids[:, 0] == A).mean()
    assert abs(share_a - 0.55) < 0.08  # 400 draws: 3 standard deviations is 0.075
    after_b = ids[ids[:, 0] == B][:, 1]
    assert (after_b == END_ID).mean() > 0.85
    # scores are the summed log-probabilities of the drawn tokens, <end> included
    for seq, score in zip(ids[:20], first.scores.numpy()[0][:20]):
        expected, previous = 0.0, START_ID
        for token in seq:
            if token == PAD_ID:
                break
            expected += np.log(TABLE[previous, token])
            previous = token
        assert score == pytest.approx(expected, rel=1e-4)


def test_random_sampler_pads_after_end_and_records_outputs():
    result = _run(RandomSampler(num_samples=8), batch=3, max_length=6, seed=[5, 6])
    assert result.ids.shape == (3, 8, 6) and result.outputs.shape == (3, 8, 6, 1)
    for seq, recorded in zip(result.ids.numpy().reshape(-1, 6),
                             result.outputs.numpy().reshape(-1, 6)):
        end = seq.tolist().index(END_ID)
        assert (seq[end + 1:] == PAD_ID).all() and (recorded[end + 1:] == 0).all()
        assert (recorded[:end + 1] > 0).all()


VOCAB = list(SPECIAL_TOKENS) + [f"w{i}" for i in range(20)]
GOLDEN_OPTIONS = {"paper": {}, "grid_gru": dict(spatial_grid=2, temporal="gru", context_dim=16)}


def golden_model(name):
    """The captioner of tests/data/sampler_golden.*: seeded encoder, and a
    decoder that memorised four captions of different lengths."""
    keras.utils.set_random_seed(7)
    model = build_captioner(ModelConfig(image_size=75, num_frames=3, feature_layer="mixed2",
                                        embedding_dim=16, hidden_dim=24, attention_dim=16,
                                        dropout=0.0, **GOLDEN_OPTIONS[name]), VOCAB)
    weights = np.load(data_path("sampler_golden.npz"))
    for layer in (model.context, model.decoder):
        if layer is not None:
            layer.set_weights([weights[f"{name}/{layer.name}/{i}"]
                               for i in range(len(layer.weights))])
    frames = np.random.default_rng(11).integers(0, 256, (4, 3, 75, 75, 3)).astype("uint8")
    return model, frames


@pytest.mark.parametrize("name", list(GOLDEN_OPTIONS))
@pytest.mark.parametrize("beam_size", [1, 3])
def test_captions_of_a_fixed_model_are_unchanged(name, beam_size):
    """Recorded with the LSTM-specific beam search this sampler replaced."""
    expected = json.load(open(data_path("sampler_golden.json")))[f"{name}_beam{beam_size}"]
    model, frames = golden_model(name)
    sampler = GreedySampler() if beam_size == 1 else BeamSampler(beam_size)
    ids, scores, attention = generate(model, model.encode(frames), sampler, max_length=8)
    assert ids[:, 0].numpy().tolist() == expected["ids"]
    # Scores to float32 rounding: CPU kernels differ by host (measured: up to
    # 3e-7 between two AMD EPYC hosts, the same ids and the same code).
    np.testing.assert_allclose(scores[:, 0].numpy(), np.float32(expected["scores"]), rtol=1e-6,
                               atol=1e-6)
    # attention was stored to 6 digits (5e-7), and differs by host up to 3e-6
    np.testing.assert_allclose(attention[:, 0].numpy(), expected["attention"], atol=1e-5)


def test_caption_generator_gives_texts_and_several_captions():
    model, frames = golden_model("paper")
    captions = CaptionGenerator(model, BeamSampler(3, num_returned=2), max_length=8)(frames)
    assert captions.texts.shape == (4, 2) and captions.ids.shape == (4, 2, 8)
    assert captions.texts[0, 0].numpy().decode() == "w0 w1 w2 w3 w4 w5"
    assert (captions.scores[:, 0].numpy() >= captions.scores[:, 1].numpy()).all()

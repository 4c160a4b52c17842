"""The sampling rules on the shared loop: the next-token hook, top-k and
top-p (nucleus) sampling, the step index, and `DecodingConfig`'s choice."""

import numpy as np
import pytest
import tensorflow as tf
from test_sampler import TABLE, A, B, C, _run

from etenet_tf.errors import UsageError
from etenet_tf.generation import (
    BeamSampler,
    DecodingConfig,
    GreedySampler,
    RandomSampler,
    RowSampler,
    TopKSampler,
    TopPSampler,
    drawn_sampler,
)
from etenet_tf.text.vocabulary import END_ID, PAD_ID, START_ID


class ArgmaxRule(RowSampler):
    """A new rule is only a next-token hook (the keras-hub way)."""

    def get_next_token(self, log_probs, index, seed):
        return tf.argmax(log_probs, axis=-1, output_type=tf.int32)


def test_a_rule_written_as_a_hook_runs_on_the_shared_loop():
    greedy = _run(GreedySampler(length_penalty=0.0))
    argmax = _run(ArgmaxRule(num_samples=1), seed=[0, 0])
    assert argmax.ids.numpy().tolist() == greedy.ids.numpy().tolist()
    np.testing.assert_allclose(argmax.scores.numpy(), greedy.scores.numpy(), rtol=1e-6)
    # step outputs are recorded as for beam search
    np.testing.assert_array_equal(argmax.outputs.numpy(), greedy.outputs.numpy())


def test_the_step_function_gets_the_index():
    never_ends = np.zeros_like(TABLE)
    never_ends[:, A] = 1.0
    log_table = tf.constant(np.log(never_ends + 1e-12).astype("float32"))

    def step(tokens, state, index):  # records the index it was given
        index_column = tf.cast(tf.fill(tf.shape(tokens), index), tf.float32)[:, None]
        return tf.gather(log_table, tokens), state, index_column

    for sampler, seed in ((BeamSampler(2), None), (RandomSampler(2), [1, 2])):
        result = sampler(step, tf.zeros([1]), 1, max_length=4, seed=seed)
        assert result.ids[0, 0].numpy().tolist() == [A] * 4
        assert result.outputs[0, 0, :, 0].numpy().tolist() == [0, 1, 2, 3]


def test_top_k_of_one_is_greedy():
    greedy = _run(GreedySampler(length_penalty=0.0))
    top1 = _run(TopKSampler(k=1, num_samples=3), seed=[4, 2])
    for row in top1.ids.numpy()[0]:
        assert row.tolist() == greedy.ids.numpy()[0, 0].tolist()
    np.testing.assert_allclose(top1.scores.numpy(), 0.0, atol=1e-6)  # renormalised: p = 1


def test_top_k_draws_only_the_k_best_renormalised():
    # after a: a 0.4, c 0.3, <end> 0.3; top-2 after <start> keeps a and b
    result = _run(TopKSampler(k=2, num_samples=400), batch=1, seed=[7, 7], max_length=2)
    ids = result.ids.numpy()[0]
    assert set(ids[:, 0]) == {A, B}
    assert abs((ids[:, 0] == A).mean() - 0.55) < 0.08
    # after b: <end> 0.95 and c 0.05 are the top 2
    assert set(ids[ids[:, 0] == B][:, 1]) <= {END_ID, C}
    # scores: log-probabilities renormalised over the kept tokens (after a, c
    # and <end> tie at 0.3: all three are kept, they already sum to 1)
    kept = {START_ID: {A: 0.55, B: 0.45}, A: {A: 0.4, C: 0.3, END_ID: 0.3},
            B: {END_ID: 0.95, C: 0.05}}
    for seq, score in zip(ids[:20], result.scores.numpy()[0][:20]):
        expected = np.log(kept[START_ID][seq[0]]) + np.log(kept[seq[0]][seq[1]])
        assert score == pytest.approx(expected, rel=1e-4)


def test_top_p_keeps_the_nucleus():
    # after <start>: a 0.55, b 0.45. p = 0.5: a alone reaches it
    only_a = _run(TopPSampler(p=0.5, num_samples=50), batch=1, seed=[1, 1], max_length=1)
    assert (only_a.ids.numpy()[0, :, 0] == A).all()
    np.testing.assert_allclose(only_a.scores.numpy(), 0.0, atol=1e-6)
    # p = 0.9: both, in their proportions
    both = _run(TopPSampler(p=0.9, num_samples=400), batch=1, seed=[1, 1], max_length=1)
    first = both.ids.numpy()[0, :, 0]
    assert set(first) == {A, B} and abs((first == A).mean() - 0.55) < 0.08
    # after b (<end> 0.95, c 0.05), p = 0.9 never draws c
    after_b = _run(TopPSampler(p=0.9, num_samples=400), batch=1, seed=[2, 3], max_length=2)
    ids = after_b.ids.numpy()[0]
    assert (ids[ids[:, 0] == B][:, 1] == END_ID).all()


def test_random_samplers_need_a_seed_and_repeat_with_it():
    with pytest.raises(ValueError, match="needs a seed"):
        _run(RandomSampler(num_samples=2))
    seeded = TopPSampler(p=0.95, num_samples=16, seed=(0, 5))
    np.testing.assert_array_equal(_run(seeded).ids.numpy(), _run(seeded).ids.numpy())


@pytest.mark.parametrize("sampling, kind", [("beam", BeamSampler), ("random", RandomSampler),
                                            ("top_k", TopKSampler), ("top_p", TopPSampler)])
def test_decoding_config_picks_the_rule(sampling, kind):
    config = DecodingConfig(sampling=sampling, beam_size=3, num_captions=2, top_k=4, top_p=0.8)
    config.validate()
    sampler = config.sampler()
    assert type(sampler) is kind
    assert sampler.rows_per_input == (3 if sampling == "beam" else 2)


def test_one_table_builds_every_drawing_rule_with_its_settings():
    """`--sampling`, `--scst_sampling` and the demo all build drawn samplers
    through `drawn_sampler`: each rule gets its own k or p, and every rule
    the count, temperature and seed."""
    built = {rule: drawn_sampler(rule, 3, temperature=0.5, top_k=4, top_p=0.7, seed=(0, 1))
             for rule in ("random", "top_k", "top_p")}
    assert [type(s) for s in built.values()] == [RandomSampler, TopKSampler, TopPSampler]
    assert (built["top_k"].k, built["top_p"].p) == (4, 0.7)
    for sampler in built.values():
        assert (sampler.num_samples, sampler.temperature, sampler.seed) == (3, 0.5, (0, 1))
    with pytest.raises(ValueError, match="unknown sampling rule 'beam'; choose from random"):
        drawn_sampler("beam", 3)


def test_drawn_captions_may_outnumber_the_beams_but_beams_may_not():
    DecodingConfig(sampling="top_p", beam_size=1, num_captions=5).validate()
    with pytest.raises(UsageError, match="--num_captions=5 must be <= --beam_size=1"):
        DecodingConfig(beam_size=1, num_captions=5).validate()
    with pytest.raises(UsageError, match="--top_p=0 must be in"):
        DecodingConfig(sampling="top_p", top_p=0.0).validate()


def test_rows_end_with_pad_in_every_rule():
    for sampler in (TopKSampler(2, 8), TopPSampler(0.9, 8), RandomSampler(8)):
        ids = _run(sampler, batch=2, max_length=6, seed=[3, 9]).ids.numpy().reshape(-1, 6)
        for seq in ids:
            assert seq[0] != START_ID
            if END_ID in seq.tolist():
                end = seq.tolist().index(END_ID)
                assert (seq[end + 1:] == PAD_ID).all()

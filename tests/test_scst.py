"""Self-critical training: the CIDEr-D reward, the objective, the stage."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from pycocoevalcap.cider.cider import Cider

from etenet_tf import jobs
from etenet_tf.evaluation.cider import CiderD
from etenet_tf.run_dir import NoCheckpointError, RunDir
from etenet_tf.text import END_ID, Vocabulary, ngrams, words_of

from conftest import SHARED, data_path


def _msrvtt_references(path, limit=None):
    data = json.load(open(path))
    references = {}
    for sentence in data["sentences"]:
        references.setdefault(sentence["video_id"], []).append(sentence["caption"])
    ids = sorted(references)[:limit]
    # normalised as the package tokenises (pycocoevalcap then splits on spaces)
    return {v: [" ".join(w) for w in words_of(references[v])] for v in ids}


def _candidates(references):
    """Captions one would want a reward for: a reference itself, a prefix,
    another clip's caption, a reference run on, a single word, nothing."""
    ids = sorted(references)
    out = {}
    for i, vid in enumerate(ids):
        refs = references[vid]
        out[vid] = [refs[0], " ".join(refs[1].split()[:3]), references[ids[(i + 1) % len(ids)]][0],
                    refs[2] + " and a cat is dancing", "a", ""][i % 6]
    return out


def _ids(vocabulary, text, length, end=False):
    ids = vocabulary.ids(text.split()) + ([END_ID] if end else [])
    return ids + [0] * (length - len(ids))


@pytest.mark.parametrize("include_end", [False, True])
@pytest.mark.parametrize("source", ["slice", "shared"])
def test_reward_equals_pycocoevalcap_cider_per_caption(source, include_end):
    """Both with the same document frequencies (those of the scored
    references, pycocoevalcap's corpus mode), on real MSR-VTT references."""
    if source == "slice":
        references = _msrvtt_references(data_path("msrvtt_test_slice.json"))
    else:
        path = os.path.join(SHARED, "msrvtt", "test_videodatainfo.json")
        if not os.path.isfile(path):
            pytest.skip(f"{path} not found")
        references = _msrvtt_references(path, limit=120)
    candidates = _candidates(references)
    if include_end:  # <end> as a last word, on both sides
        end = lambda t: (t + " endtoken").strip()  # noqa: E731
        references = {v: [end(r) for r in refs] for v, refs in references.items()}
        candidates = {v: end(c) for v, c in candidates.items()}
    vocabulary = Vocabulary.build([t.split() for v in references
                                   for t in references[v] + [candidates[v]]])
    ids = sorted(references)
    _, expected = Cider().compute_score(references, {v: [candidates[v]] for v in ids})
    strip = (lambda t: t[: -len(" endtoken")] if t.endswith("endtoken") else t) \
        if include_end else (lambda t: t)
    documents = [[vocabulary.ids(r.split()) for r in references[v]] for v in ids]
    if include_end:
        # the same n-grams as pycocoevalcap's: "endtoken" there is <end> here
        documents = [[vocabulary.ids(strip(r).split()) + [END_ID] for r in references[v]]
                     for v in ids]
    cider = CiderD(*ngrams.document_frequencies(documents, len(vocabulary)), len(vocabulary),
                   include_end=include_end)
    length = 48
    r_max = max(len(references[v]) for v in ids)
    candidate_ids = tf.constant([_ids(vocabulary, strip(candidates[v]), length, include_end)
                                 for v in ids])
    reference_ids = tf.constant([
        [_ids(vocabulary, strip(r), length, include_end) for r in references[v]]
        + [[0] * length] * (r_max - len(references[v])) for v in ids])
    got = cider(candidate_ids, reference_ids).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    assert (got > 0.5).any() and (got == 0).any()  # a copied reference vs a single word


def test_frequencies_are_stored_beside_the_vocabulary(shapes_records, tmp_path):
    records_dir = shapes_records.data.records_dir
    vocabulary = Vocabulary.load(os.path.join(records_dir, "vocab.txt"))
    stored = ngrams.load_frequencies(os.path.join(records_dir, ngrams.FREQUENCIES_FILE),
                                     vocabulary)
    codes, counts, documents = stored
    assert documents == 48 and len(codes) == len(counts) > 100
    # "a" (in every reference of the shapes data) is in all 48 training documents
    a = ngrams.ngram_codes(vocabulary.ids(["a"]), 1, ngrams.ngram_base(len(vocabulary)))[0]
    assert counts[np.searchsorted(codes, a)] == 48
    # another vocabulary's frequencies are not used
    other = Vocabulary(vocabulary.tokens[:-1])
    assert ngrams.load_frequencies(os.path.join(records_dir, ngrams.FREQUENCIES_FILE),
                                   other) is None


def test_loss_weights_samples_by_advantage_and_ignores_padding():
    import keras

    from etenet_tf.model import ModelConfig, build_captioner
    from etenet_tf.text.vocabulary import SPECIAL_TOKENS
    from etenet_tf.training.objectives import SelfCritical
    keras.utils.set_random_seed(0)
    vocab = list(SPECIAL_TOKENS) + ["a", "b", "c"]
    model = build_captioner(ModelConfig(image_size=75, num_frames=2, embedding_dim=8,
                                        hidden_dim=8, attention_dim=8, dropout=0.0), vocab)
    objective = SelfCritical(cider=None, num_samples=2, max_length=4)
    features = tf.random.normal([1, 2, 1, 1, model.encoder.output_dim])
    samples = tf.constant([[4, 5, END_ID, 0], [6, END_ID, 0, 0]])
    batch = {"features": features, "samples": samples,
             "rewards": tf.constant([[2.0, 1.0]]), "baseline": tf.constant([[1.0, 2.0]])}
    head = model.decoder.trainable_weights
    with tf.GradientTape() as tape:
        loss, logs = objective(model, batch, training=False)
    assert loss.shape == (1,) and float(logs["reward"]) == 1.5
    assert all(g is not None for g in tape.gradient(loss, head))
    # the loss only sees tokens up to <end>: what follows changes nothing
    padded = dict(batch, samples=tf.constant([[4, 5, END_ID, 6], [6, END_ID, 5, 4]]))
    again, _ = objective(model, padded, training=False)
    np.testing.assert_allclose(loss.numpy(), again.numpy(), rtol=1e-6)
    # advantage +1 on the first sample, -1 on the second: minimising the loss
    # raises the first's log-probability and lowers the second's
    logits = model.decoder(tf.repeat(model.memory(features), 2, 0),
                           tf.constant([[2, 4, 5, END_ID], [2, 6, END_ID, 0]]))
    log_p = tf.nn.log_softmax(logits).numpy()
    first = log_p[0, [0, 1, 2], [4, 5, END_ID]].sum()
    second = log_p[1, [0, 1], [6, END_ID]].sum()
    assert float(loss[0]) == pytest.approx(-(1.0 * first - 1.0 * second) / 2, rel=1e-5)


@pytest.fixture(scope="module")
def scst_model_dir(trained_model_dir, tmp_path_factory):
    """The tiny trained model, copied, then one epoch of scst."""
    cfg = trained_model_dir
    model_dir = str(tmp_path_factory.mktemp("scst") / "model")
    shutil.copytree(cfg.model_dir, model_dir, ignore=shutil.ignore_patterns(".lock"))
    run = cfg.replace(model_dir=model_dir, stage="scst", scst_epochs=1, scst_samples=3,
                      scst_learning_rate=1e-4)
    best = jobs.run(run)
    return run, best


def test_scst_stage_trains_from_finetune_and_logs_its_reward(scst_model_dir):
    cfg, best = scst_model_dir
    run = RunDir(cfg.model_dir)
    assert best["epoch"] == 1 and run.read_best("scst") == best
    # the finetuned encoder's features were cached for it, the decoder moved
    assert os.path.isfile(os.path.join(run.stage_dir("scst"), "features", "cache.json"))
    fine, scst = run.load_trained_model("finetune"), run.load_trained_model("scst")
    np.testing.assert_array_equal(fine.encoder.weights[0].numpy(), scst.encoder.weights[0].numpy())
    assert not np.allclose(fine.decoder.output_projection.kernel.numpy(),
                           scst.decoder.output_projection.kernel.numpy())
    tags = set()
    for event_file in tf.io.gfile.glob(os.path.join(run.logs_dir("scst"), "train", "*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            tags.update(v.tag for v in event.summary.value)
    assert {"loss", "reward", "baseline", "entropy"} <= tags


@pytest.mark.slow
def test_later_stages_use_the_scst_checkpoint(scst_model_dir, tmp_path):
    cfg, _ = scst_model_dir
    rows = jobs.run(cfg.replace(stage="evaluate", checkpoint="all", split="val"))
    assert [stage for stage, _ in rows] == ["pretrain", "finetune", "scst"]
    assert jobs.checkpoint_stages("auto", RunDir(cfg.model_dir)) == ["scst"]


def test_scst_without_a_trained_model_names_the_command(shapes_records, tmp_path):
    cfg = shapes_records.replace(model_dir=str(tmp_path / "m"), stage="scst", scst_epochs=1)
    with pytest.raises(NoCheckpointError, match="run --stage=pretrain"):
        jobs.run(cfg)


@pytest.mark.parametrize("rule, expected", [("random", "RandomSampler"), ("top_k", "TopKSampler"),
                                            ("top_p", "TopPSampler")])
def test_scst_sampling_flag_picks_the_rule_that_draws_the_captions(shapes_records, rule,
                                                                   expected):
    from etenet_tf.training import stages
    training = shapes_records.replace(scst_sampling=rule, scst_samples=4, scst_top_k=3,
                                      scst_top_p=0.5).training
    objective = stages.self_critical(training, stages.load_prepared(shapes_records.data))
    sampler = objective.sampler
    assert type(sampler).__name__ == expected and sampler.rows_per_input == 4
    assert getattr(sampler, "k", 3) == 3 and getattr(sampler, "p", 0.5) == 0.5

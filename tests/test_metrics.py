import pytest

from etenet_tf.evaluation import metrics

from conftest import data_path

EXPECTED = {"Bleu_1": 0.55, "Bleu_2": 0.428174, "Bleu_3": 0.284043, "Bleu_4": 0.201143,
            "METEOR": 0.295797, "ROUGE_L": 0.522104, "CIDEr": 1.242192}


def _example():
    lines = [open(data_path(n), encoding="utf-8").read().splitlines()
             for n in ("hyp.txt", "ref1.txt", "ref2.txt")]
    refs = {i: [a, b] for i, (a, b) in enumerate(zip(lines[1], lines[2]))}
    return refs, dict(enumerate(lines[0]))


@pytest.mark.skipif(not metrics.java_available(), reason="needs Java")
def test_matches_published_nlg_eval_scores():
    scores = metrics.score(*_example())
    for name, value in EXPECTED.items():
        assert scores[name] == pytest.approx(value, abs=5e-6), name


@pytest.mark.skipif(not metrics.java_available(), reason="needs Java")
def test_single_sentence_case():
    scores = metrics.score({"a": ["this is a test", "this is also a test"]},
                           {"a": "this is a good test"})
    assert scores["Bleu_4"] == pytest.approx(0.0000903602, abs=1e-9)
    assert scores["METEOR"] == pytest.approx(0.44434387, abs=1e-7)
    assert scores["ROUGE_L"] == pytest.approx(0.9070631, abs=1e-7)


def test_without_java_meteor_is_unavailable(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    scores = metrics.score(*_example())
    assert scores["METEOR"] is None
    for name in ("Bleu_4", "ROUGE_L", "CIDEr"):  # already-clean text: same as with PTB
        assert scores[name] == pytest.approx(EXPECTED[name], abs=5e-6)


def test_prediction_without_reference_is_an_error():
    with pytest.raises(ValueError, match="no reference"):
        metrics.score({"a": ["x"]}, {"a": "x", "b": "y"}, meteor=False)

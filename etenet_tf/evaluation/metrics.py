"""Caption metrics with pycocoevalcap (the COCO caption evaluation code).

`score` follows pycocoevalcap's own protocol (`COCOEvalCap.evaluate`):
PTB-tokenise references and predictions with Stanford's tokenizer (Java),
then BLEU-1..4, METEOR 1.5 (Java), ROUGE-L and CIDEr-D. The METEOR JVM is
started once per call; SPICE runs only when its Stanford CoreNLP jars are
already installed (it downloads them otherwise, which cannot work offline).

Without Java, the PTB tokenizer is replaced by a Python one that lowercases
and drops the same punctuation, the Java-free metrics are computed and
METEOR (and SPICE) are reported as None, with a warning.
"""

import contextlib
import logging
import os
import re
import shutil
import time

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from etenet_tf.text import tokenizer

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
# The punctuation pycocoevalcap's PTBTokenizer removes after tokenising.
_PTB_PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!",
                    ",", ":", "-", "--", "...", ";"}


def java_available():
    return shutil.which("java") is not None


def _spice_jars_present():
    import pycocoevalcap.spice as spice_pkg
    lib = os.path.join(os.path.dirname(spice_pkg.__file__), "lib")
    return os.path.isfile(os.path.join(lib, "stanford-corenlp-3.6.0-models.jar"))


def _python_tokenize(captions):
    """Java-free stand-in for the PTB tokenizer: {id: [str]} -> {id: [str]}."""
    out = {}
    for key, texts in captions.items():
        tokens = []
        for text in texts:
            words = re.findall(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?|[^\sA-Za-z0-9]", text.lower())
            tokens.append(" ".join(w for w in words if w not in _PTB_PUNCTUATION))
        out[key] = tokens
    return out


def _ptb_tokenize(captions):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    return PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})


def _clean(text):
    # METEOR's line protocol and the tokenizer both break on newlines; a
    # script without spaces (Chinese, Japanese) is one token per character,
    # as the package's tokenizer and the scst reward count it
    return " ".join(tokenizer.space_out(str(text)).split())


def score(references, predictions, *, tokenize=True, meteor=True, spice=False, timings=None):
    """Scores predicted captions against reference captions.

    Args:
        references: `{id: [reference strings]}`.
        predictions: `{id: prediction string}`; every id needs at least one
            reference.
        tokenize: PTB-tokenise first, as pycocoevalcap does (set False for
            text that is already tokenised, e.g. during validation).
        meteor: compute METEOR (starts one JVM).
        spice: compute SPICE if its jars are present.
        timings: optional dict, filled with the seconds each step took
            (`tokenize`, `Bleu`, `METEOR`, `ROUGE_L`, `CIDEr`, `SPICE`).

    Returns:
        `{"Bleu_1".."Bleu_4", "METEOR", "ROUGE_L", "CIDEr"}` as floats
        (METEOR None when Java is missing or `meteor=False`), plus `SPICE`
        when computed.
    """
    ids = sorted(predictions, key=str)
    if not ids:
        raise ValueError("no predictions to score")
    missing = [i for i in ids if not references.get(i)]
    if missing:
        raise ValueError(f"{len(missing)} predictions have no reference, e.g. {missing[0]!r}")
    gts = {i: [_clean(r) for r in references[i]] for i in ids}
    res = {i: [_clean(predictions[i])] for i in ids}
    has_java = java_available()
    timings = {} if timings is None else timings
    if tokenize:
        with _timed(timings, "tokenize"):
            if has_java:
                gts, res = _ptb_tokenize(gts), _ptb_tokenize(res)
            else:
                logging.warning("Java not found: using a Python tokenizer instead of the PTB "
                                "tokenizer; METEOR and SPICE are unavailable (install a JRE)")
                gts, res = _python_tokenize(gts), _python_tokenize(res)

    scores = {}
    with _timed(timings, "Bleu"):
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores.update({f"Bleu_{n + 1}": float(b) for n, b in enumerate(bleu)})
    scores["METEOR"] = None
    if meteor and has_java:
        from pycocoevalcap.meteor.meteor import Meteor
        with _timed(timings, "METEOR"):
            scorer = Meteor()
            try:
                scores["METEOR"] = float(scorer.compute_score(gts, res)[0])
            finally:
                del scorer  # closes its JVM
    with _timed(timings, "ROUGE_L"):
        scores["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    with _timed(timings, "CIDEr"):
        scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if spice and has_java and _spice_jars_present():
        from pycocoevalcap.spice.spice import Spice
        with _timed(timings, "SPICE"):
            scores["SPICE"] = float(Spice().compute_score(gts, res)[0])
    return scores


@contextlib.contextmanager
def _timed(timings, name):
    """Adds the wall time of the `with` block to `timings[name]`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def format_table(rows, metrics=METRICS):
    """Plain-text table: rows = [(name, scores dict)]; attribute accuracies
    (`acc_*` keys) in any row are added as columns after `metrics`."""
    extra = []
    for _, scores in rows:
        extra += [k for k in scores if k.startswith("acc_") and k not in extra]
    metrics = tuple(metrics) + tuple(extra)
    head = ["".ljust(12)] + [m.rjust(9) for m in metrics]
    lines = [" ".join(head)]
    for name, scores in rows:
        cells = [str(name).ljust(12)]
        for m in metrics:
            v = scores.get(m)
            cells.append(("n/a" if v is None else f"{v:.4f}").rjust(9))
        lines.append(" ".join(cells))
    return "\n".join(lines)

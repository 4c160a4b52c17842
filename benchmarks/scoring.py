"""6. Evaluate: seconds to score an MSR-VTT-sized test set (2990 x 20)."""

import json
import os
import time

from etenet_tf.evaluation import metrics


def references_and_predictions(path):
    """The real MSR-VTT test references; each video's prediction is the
    first reference of the video before it (a fluent, wrong caption)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    references = {}
    for sentence in data["sentences"]:
        references.setdefault(sentence["video_id"], []).append(sentence["caption"])
    ids = sorted(references)
    predictions = {vid: references[ids[i - 1]][0] for i, vid in enumerate(ids)}
    return references, predictions


def run(ctx):
    path = os.path.join(ctx.shared_dir, "msrvtt", "test_videodatainfo.json")
    if not os.path.isfile(path):
        return {"title": "evaluate: score 2990 videos x 20 references", "skipped":
                f"{path} not found (pass --shared_dir)"}
    references, predictions = references_and_predictions(path)
    steps = {}
    start = time.perf_counter()
    scores = metrics.score(references, predictions, timings=steps)
    total = time.perf_counter() - start
    count = sum(len(r) for r in references.values())
    return {
        "title": f"evaluate: score {len(predictions)} videos x "
                 f"{count / len(references):.0f} references",
        "a": f"{total:.1f} s total", "b": f"{len(predictions) / total:.0f} videos/s",
        "ratio": None, "target": "(no target: reported)", "met": None,
        "details": {"videos": len(predictions), "references": count,
                    "seconds": total, "seconds_per_step": steps,
                    "java": metrics.java_available(), "scores": scores},
    }

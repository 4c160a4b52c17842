"""`--stage=all`: the whole main job, prepare -> the training stages (those
with epochs: scst only with --scst_epochs > 0) ->
evaluate (every trained stage on the test split) -> export (the last),
with a closing table that compares the stages."""

import time

from etenet_tf import files
from etenet_tf.evaluation import metrics as metrics_lib
from etenet_tf.export import serving
from etenet_tf.jobs import model_flags
from etenet_tf.jobs.registry import JOBS, TRAINING_STAGES
from etenet_tf.run_dir import RunDir
from etenet_tf.training.stages import STAGES as TRAINING_SPECS


def run(config):
    """Returns the evaluation rows `[(stage, scores)]`."""
    config.data.validate(preparing=True)
    config.model_for_data.validate()
    config.training.validate()
    config.decoding.validate()
    config.export.validate()
    # model flags that a model already in --model_dir would ignore: before anything is written
    model_flags.check(config, RunDir(config.model_dir))
    # every place the job writes is checked first, not after minutes of training
    files.ensure_directory(config.data.records_dir, "records_dir")
    files.ensure_directory(config.model_dir, "model_dir")
    serving.check_export_target(config.export)
    timings = {}

    def timed(name, **changes):
        start = time.time()
        print(f"=== {name}", flush=True)
        result = JOBS[name].run(config.replace(stage=name, **changes))
        timings[name] = time.time() - start
        return result

    timed("prepare")
    for stage in TRAINING_STAGES:
        if TRAINING_SPECS[stage].num_epochs(config.training) > 0:  # 0 epochs: left out
            timed(stage)
    rows = timed("evaluate", checkpoint="all")
    timed("export", checkpoint=rows[-1][0])
    print(f"\n=== {' vs '.join(stage for stage, _ in rows)}, "
          f"{config.evaluation.split} split, beam {config.decoding.beam_size}")
    print(metrics_lib.format_table(rows, ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr")))
    if any("acc_all" in scores for _, scores in rows):
        print("acc_*: share of captions naming the right value of each known attribute "
              "(acc_all: all of them right)")
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
          + f", total {sum(timings.values()):.0f}")
    return rows

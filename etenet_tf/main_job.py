"""`--stage=all`: the whole main job, prepare -> pretrain -> finetune ->
evaluate (both checkpoints on the test split) -> export, with a closing
table that compares the frozen-encoder model with the end-to-end one."""

import time

from etenet_tf.evaluation import evaluate
from etenet_tf.evaluation import metrics as metrics_lib


def run_all(cfg):
    from etenet_tf import files
    from etenet_tf.cli import main as cli
    from etenet_tf.export import serving
    from etenet_tf.training import stages

    # every place the job writes is checked first, not after minutes of training
    files.ensure_directory(cfg.records_dir, "records_dir")
    files.ensure_directory(cfg.model_dir, "model_dir")
    serving.check_export_target(cfg.export_dir, cfg.export_name, cfg.export_version)
    timings = {}

    def timed(name, fn):
        start = time.time()
        print(f"=== {name}", flush=True)
        result = fn(cfg)
        timings[name] = time.time() - start
        return result

    timed("prepare", cli.run_prepare)
    timed("pretrain", stages.run_pretrain)
    timed("finetune", stages.run_finetune)
    cfg.checkpoint = "both"
    rows = timed("evaluate", evaluate.run_evaluate)
    cfg.checkpoint = "finetune"
    timed("export", serving.run_export)
    print("\n=== pretrain (frozen encoder) vs finetune (end to end), "
          f"{cfg.split} split, beam {cfg.beam_size}")
    print(metrics_lib.format_table(rows, ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr")))
    if any("acc_all" in scores for _, scores in rows):
        print("acc_*: share of captions naming the right value of each known attribute "
              "(acc_all: all of them right)")
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
          + f", total {sum(timings.values()):.0f}")
    return rows

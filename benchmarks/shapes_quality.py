"""What the shapes demo gets right, over seeds: the README's quality numbers.

    python -m benchmarks.shapes_quality                      # 3 seeds, all variants
    python -m benchmarks.shapes_quality --variants=both --seeds=0,1,2
    python -m benchmarks.shapes_quality --variants=paper,spatial --stages=pretrain

For every variant (the model options) and seed (model initialisation and
data order), runs the real command line (`main.py`) stage by stage on the
`flags/shapes.cfg` preset: prepare (once), pretrain, finetune and scst,
then evaluates each stage's best
checkpoint on the test split and on clips rendered from a generation seed
that training never used (`--shapes_seed`). Prints, and saves as JSON,
min / median / max over seeds of CIDEr and attribute accuracy per variant,
stage and split, and the wall time of each stage.

Variants (all on the preset's budget: encoder, layer, epochs, rates):
    paper:    --spatial_grid=1 --temporal=none  (the paper's EtENet)
    temporal: --spatial_grid=1 --temporal=gru
    spatial:  --spatial_grid=3 --temporal=none
    position: --spatial_grid=3 --temporal=position
    conv:     --spatial_grid=3 --temporal=conv
    both:     --spatial_grid=3 --temporal=gru   (the preset)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {
    "paper": ["--spatial_grid=1", "--temporal=none"],
    "temporal": ["--spatial_grid=1", "--temporal=gru"],
    "spatial": ["--spatial_grid=3", "--temporal=none"],
    "position": ["--spatial_grid=3", "--temporal=position"],
    "conv": ["--spatial_grid=3", "--temporal=conv"],
    "both": ["--spatial_grid=3", "--temporal=gru"],
}
METRICS = ("CIDEr", "acc_colour", "acc_shape", "acc_direction", "acc_all")


def run_main(args, log):
    """Runs main.py; returns its wall seconds (raises with the log's tail on failure)."""
    start = time.time()
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n$ main.py {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args],
                              cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONPATH=ROOT))
    if proc.returncode:
        with open(log, encoding="utf-8") as f:
            raise RuntimeError(f"main.py {' '.join(args)} failed:\n{f.read()[-3000:]}")
    return time.time() - start


def read_test_scores(model_dir, stage):
    with open(os.path.join(model_dir, "evaluation", f"{stage}_test_scores.json"),
              encoding="utf-8") as f:
        return json.load(f)


def run_one(args, variant, seed, records, unseen):
    """Trains one variant with one seed; returns {stage: {split: scores}, "seconds": ...}."""
    model_dir = os.path.join(args.work_dir, f"{variant}_seed{seed}")
    log = os.path.join(args.work_dir, f"{variant}_seed{seed}.log")
    common = [f"--flagfile={args.flagfile}", f"--records_dir={records}",
              f"--model_dir={model_dir}", f"--seed={seed}", *VARIANTS[variant]]
    saved = os.path.join(model_dir, "quality.json")
    if os.path.exists(saved):  # a finished run of an earlier call: reuse it
        with open(saved, encoding="utf-8") as f:
            return json.load(f)
    result = {"seconds": {}}
    for stage in args.stages.split(","):
        result["seconds"][stage] = run_main(common + [f"--stage={stage}"], log)
    for split_name, records_dir in (("test", records), ("unseen", unseen)):
        for stage in args.stages.split(","):
            run_main([f"--flagfile={args.flagfile}", f"--records_dir={records_dir}",
                   f"--model_dir={model_dir}", "--stage=evaluate", f"--checkpoint={stage}"], log)
            result.setdefault(stage, {})[split_name] = read_test_scores(model_dir, stage)
    from etenet_tf.files import write_json
    write_json(saved, result)
    return result


def summarise(runs):
    """min / median / max over seeds: {variant: {stage: {split: {metric: [min, med, max]}}}}."""
    table = {}
    for variant, by_seed in runs.items():
        seeds = list(by_seed.values())
        for stage in [s for s in seeds[0] if s != "seconds"]:
            for split in seeds[0][stage]:
                for metric in METRICS:
                    values = [r[stage][split][metric] for r in seeds if metric in r[stage][split]]
                    if values:
                        table.setdefault(variant, {}).setdefault(stage, {}).setdefault(
                            split, {})[metric] = [min(values), statistics.median(values),
                                                  max(values)]
        for stage in {s for r in seeds for s in r["seconds"]}:
            # a run reconstructed from its log has no timings
            values = [r["seconds"][stage] for r in seeds if stage in r["seconds"]]
            table[variant].setdefault("seconds", {})[stage] = [
                min(values), statistics.median(values), max(values)]
    return table


def format_table(table):
    lines = ["| variant | stage | split | " + " | ".join(METRICS) + " |",
             "|---" * (3 + len(METRICS)) + "|"]
    for variant, stages in table.items():
        for stage, splits in stages.items():
            if stage == "seconds":
                continue
            for split, metrics in splits.items():
                cells = ["{:.2f} / {:.2f} / {:.2f}".format(*metrics[m]) if m in metrics else "-"
                         for m in METRICS]
                lines.append(f"| {variant} | {stage} | {split} | " + " | ".join(cells) + " |")
    lines.append("")
    stage_names = next(iter(table.values()))["seconds"]
    lines.append("| variant | " + " | ".join(f"{s} s" for s in stage_names) + " |")
    for variant, stages in table.items():
        lines.append(f"| {variant} | " + " | ".join(
            "{:.0f} / {:.0f} / {:.0f}".format(*v) for v in stages["seconds"].values()) + " |")
    return "\n".join(lines)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--stages", default="pretrain,finetune,scst",
                   help="training stages to run and evaluate, in order")
    p.add_argument("--flagfile", default=os.path.join(ROOT, "flags", "shapes.cfg"))
    p.add_argument("--work_dir", default=os.path.join(ROOT, "runs", "shapes_quality"))
    p.add_argument("--unseen_seed", type=int, default=777,
                   help="--shapes_seed of the unseen test clips (training uses the preset's)")
    p.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "shapes_quality.json"))
    args = p.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variant(s) {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(VARIANTS)}")
    return args


def main(argv=None):
    args = parse(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    records = os.path.join(args.work_dir, "records")
    unseen = os.path.join(args.work_dir, "unseen", "records")
    log = os.path.join(args.work_dir, "prepare.log")
    run_main([f"--flagfile={args.flagfile}", f"--records_dir={records}", "--stage=prepare"], log)
    # the unseen clips: another generation seed, one clip per combination and split
    run_main([f"--flagfile={args.flagfile}", f"--records_dir={unseen}", "--stage=prepare",
           f"--shapes_seed={args.unseen_seed}", "--shapes_train_per_combination=1"], log)
    runs = {}
    for variant in args.variants.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            print(f"{variant}, seed {seed} ...", file=sys.stderr, flush=True)
            runs.setdefault(variant, {})[seed] = run_one(args, variant, seed, records, unseen)
    table = summarise(runs)
    from etenet_tf.files import write_json
    write_json(args.output, {"settings": vars(args), "runs": runs, "summary": table})
    print(format_table(table))
    print(f"\n(min / median / max over seeds {args.seeds}; JSON saved to {args.output})")


if __name__ == "__main__":
    main()

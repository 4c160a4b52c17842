"""What captioners get right on the scenes benchmark, over seeds (docs/scenes.md).

    python -m benchmarks.scenes_quality                          # everything
    python -m benchmarks.scenes_quality --variants=paper --seeds=0 --stages=pretrain
    python -m benchmarks.scenes_quality --variants=preset,standin_preset

For every variant (encoder start and model options) and seed (model
initialisation and data order), runs the real command line (`main.py`) on
the `flags/scenes.cfg` preset: prepare (once), then the training stages in
order, and evaluates each stage's best checkpoint on the test split and on
clips rendered from a generation seed that training never used
(`--scenes_seed`). Prints, and saves as JSON, min / median / max over seeds
of CIDEr and every attribute accuracy per variant, stage and split, and the
wall time of each stage.

Resuming: every finished stage and evaluation is kept in
`<work_dir>/<variant>_seed<seed>/quality.json`; running the same command
again (after a kill, or with more variants or seeds) does only what is
missing, and the JSON summary covers every run found for the variants and
seeds asked for.

Variants (all on the preset's budget: layer, sizes, epochs, rates):
    paper:             --spatial_grid=1 --temporal=none, random encoder
                       (BatchNorm calibrated): the paper's EtENet
    standin_paper:     the same with the stand-in pretrained encoder
    preset:            --spatial_grid=3 --temporal=gru, random encoder
                       (today's shapes preset)
    standin_preset:    the same with the stand-in pretrained encoder
    grid1_gru, grid3_none, grid3_position, grid3_conv:
                       the ablations (random encoder); grid 3 + gru is `preset`
The stand-in encoder's weights come from `benchmarks.standin_encoder`
(built first when `--standin_weights` does not exist).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks.shapes_quality import read_test_scores, run_main  # (one way to run main.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDIN = "standin"  # marks the variants that start from the stand-in weights
VARIANTS = {
    "paper": ["--spatial_grid=1", "--temporal=none"],
    "standin_paper": [STANDIN, "--spatial_grid=1", "--temporal=none"],
    "preset": ["--spatial_grid=3", "--temporal=gru"],
    "standin_preset": [STANDIN, "--spatial_grid=3", "--temporal=gru"],
    "grid1_gru": ["--spatial_grid=1", "--temporal=gru"],
    "grid3_none": ["--spatial_grid=3", "--temporal=none"],
    "grid3_position": ["--spatial_grid=3", "--temporal=position"],
    "grid3_conv": ["--spatial_grid=3", "--temporal=conv"],
}
METRICS = ("CIDEr", "acc_subject", "acc_action", "acc_object", "acc_region", "acc_order",
           "acc_all")


def variant_flags(args, variant):
    """The main.py flags of a variant."""
    flags = []
    for flag in VARIANTS[variant]:
        if flag == STANDIN:
            flags.append(f"--encoder_weights={os.path.abspath(args.standin_weights)}")
        else:
            flags.append(flag)
    return flags


def run_one(args, variant, seed, records, unseen):
    """Trains one variant with one seed, stage by stage, resuming what an
    earlier call finished; returns {stage: {split: scores}, "seconds": ...}."""
    from etenet_tf.files import write_json
    model_dir = os.path.join(args.work_dir, f"{variant}_seed{seed}")
    log = os.path.join(args.work_dir, f"{variant}_seed{seed}.log")
    os.makedirs(model_dir, exist_ok=True)
    saved = os.path.join(model_dir, "quality.json")
    result = {"seconds": {}}
    if os.path.exists(saved):
        with open(saved, encoding="utf-8") as f:
            result = json.load(f)
    common = [f"--flagfile={args.flagfile}", f"--records_dir={records}",
              f"--model_dir={model_dir}", f"--seed={seed}", *variant_flags(args, variant)]
    for stage in args.stages.split(","):
        if stage not in result["seconds"]:
            result["seconds"][stage] = run_main(common + [f"--stage={stage}"], log)
            write_json(saved, result)
        for split_name, records_dir in (("test", records), ("unseen", unseen)):
            if split_name in result.get(stage, {}):
                continue
            run_main([f"--flagfile={args.flagfile}", f"--records_dir={records_dir}",
                   f"--model_dir={model_dir}", "--stage=evaluate", f"--checkpoint={stage}"], log)
            result.setdefault(stage, {})[split_name] = read_test_scores(model_dir, stage)
            write_json(saved, result)
    return result


def summarise(runs):
    """min / median / max over seeds: {variant: {stage: {split: {metric: [min, med, max]}}}}."""
    table = {}
    for variant, by_seed in runs.items():
        seeds = list(by_seed.values())
        stages = [s for s in seeds[0] if s != "seconds"]
        for stage in stages:
            for split in seeds[0][stage]:
                for metric in METRICS:
                    values = [r[stage][split][metric] for r in seeds
                              if metric in r.get(stage, {}).get(split, {})]
                    if values:
                        table.setdefault(variant, {}).setdefault(stage, {}).setdefault(
                            split, {})[metric] = [min(values), statistics.median(values),
                                                  max(values), len(values)]
        for stage in {s for r in seeds for s in r["seconds"]}:
            values = [r["seconds"][stage] for r in seeds if stage in r["seconds"]]
            table.setdefault(variant, {}).setdefault("seconds", {})[stage] = [
                min(values), statistics.median(values), max(values), len(values)]
    return table


def format_table(table):
    lines = ["| variant | stage | split | seeds | " + " | ".join(METRICS) + " |",
             "|---" * (4 + len(METRICS)) + "|"]
    for variant, stages in table.items():
        for stage, splits in stages.items():
            if stage == "seconds":
                continue
            for split, metrics in splits.items():
                cells = ["{:.2f} / {:.2f} / {:.2f}".format(*metrics[m][:3]) if m in metrics
                         else "-" for m in METRICS]
                seeds = max(m[3] for m in metrics.values())
                lines.append(f"| {variant} | {stage} | {split} | {seeds} | "
                             + " | ".join(cells) + " |")
    lines.append("")
    for variant, stages in table.items():
        lines.append(f"| {variant} | " + " | ".join(
            "{} {:.0f} / {:.0f} / {:.0f} s".format(s, *v[:3])
            for s, v in stages.get("seconds", {}).items()) + " |")
    return "\n".join(lines)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--stages", default="pretrain,finetune,scst",
                   help="training stages to run and evaluate, in order")
    p.add_argument("--flagfile", default=os.path.join(ROOT, "flags", "scenes.cfg"))
    p.add_argument("--work_dir", default=os.path.join(ROOT, "runs", "scenes_quality"))
    p.add_argument("--unseen_seed", type=int, default=8765,
                   help="--scenes_seed of the unseen test clips (training uses the preset's)")
    p.add_argument("--standin_weights",
                   default=os.path.join(ROOT, "runs", "standin", "standin.weights.h5"),
                   help="the stand-in encoder's weights (built when missing)")
    p.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "scenes_quality.json"))
    args = p.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variant(s) {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(VARIANTS)}")
    try:
        [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, not {args.seeds!r}")
    return args


def main(argv=None):
    args = parse(argv)
    from etenet_tf.files import write_json
    os.makedirs(args.work_dir, exist_ok=True)
    records = os.path.join(args.work_dir, "records")
    unseen = os.path.join(args.work_dir, "unseen", "records")
    log = os.path.join(args.work_dir, "prepare.log")
    run_main([f"--flagfile={args.flagfile}", f"--records_dir={records}", "--stage=prepare"], log)
    # the unseen clips: another generation seed (its test split is what counts)
    run_main([f"--flagfile={args.flagfile}", f"--records_dir={unseen}", "--stage=prepare",
           f"--scenes_seed={args.unseen_seed}", "--scenes_train_videos=16"], log)
    variants = args.variants.split(",")
    if any(STANDIN in VARIANTS[v] for v in variants) and not os.path.exists(
            args.standin_weights):
        subprocess.run([sys.executable, "-m", "benchmarks.standin_encoder",
                        f"--output={args.standin_weights}"], cwd=ROOT, check=True,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    runs = {}
    for variant in variants:
        for seed in [int(s) for s in args.seeds.split(",")]:
            print(f"{variant}, seed {seed} ...", file=sys.stderr, flush=True)
            runs.setdefault(variant, {})[seed] = run_one(args, variant, seed, records, unseen)
    table = summarise(runs)
    write_json(args.output, {"settings": vars(args), "runs": runs, "summary": table})
    print(format_table(table))
    print(f"\n(min / median / max over seeds {args.seeds}; JSON saved to {args.output})")


if __name__ == "__main__":
    main()

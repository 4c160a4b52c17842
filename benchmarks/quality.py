"""The engine of the quality benchmarks (`shapes_quality`, `scenes_quality`).

A quality benchmark is a preset (`--flagfile`), named variants (extra
`main.py` flags, the same for training and evaluation), seeds, and the
metrics to summarise. `run(args, benchmark)` prepares the records once
(plus the test clips of a generation seed training never used), then per
variant and seed runs the training stages through the real command line
and evaluates each stage's best checkpoint on both test sets; it prints,
and saves as JSON, min / median / max over seeds of every metric, and each
stage's wall time.

Every finished stage and evaluation is kept in
`<work_dir>/<variant>_seed<seed>/quality.json` at once, so the same command
after a kill (or with more variants, seeds or stages) does only what is
missing.
"""

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """What one quality benchmark is.

    Args:
        name: its name (`runs/<name>`, `benchmarks/<name>.json`).
        flagfile: the preset, under `flags/`.
        variants: `{name: [main.py flags]}`; a flag may be a callable of
            the parsed arguments (e.g. a weights path flag).
        metrics: the scores summarised, in table order.
        unseen_flags: `main.py` flags (given the unseen seed) that prepare
            the unseen clips (their test split is what counts).
        unseen_seed: the default generation seed of the unseen clips.
        before_runs: optional `callable(args, variants)` run after the
            records are prepared (e.g. building a fixture the variants use).
        prepare_flags: `main.py` flags that change what `prepare` writes: a
            variant that sets one trains and is evaluated on records of its
            own (e.g. `--image_size=150`: frames decoded from the clips at
            150 px, not the preset's 75 px frames scaled up).
    """

    name: str
    flagfile: str
    variants: dict
    metrics: tuple
    unseen_flags: object
    unseen_seed: int
    before_runs: object = None
    prepare_flags: tuple = ("--image_size", "--frames")


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


def keep_predictions(model_dir, stage, split_name):
    """Copies the captions evaluate just wrote (`evaluation/<stage>_test_
    predictions.json`, the same name for both test sets) to
    `<model_dir>/predictions_<stage>_<split_name>.json`, where the next
    evaluation does not overwrite them."""
    from etenet_tf.files import read_bytes, write_bytes
    source = os.path.join(model_dir, "evaluation", f"{stage}_test_predictions.json")
    write_bytes(os.path.join(model_dir, f"predictions_{stage}_{split_name}.json"),
                read_bytes(source))


def variant_flags(benchmark, args, variant):
    """The main.py flags of a variant (callables resolved against `args`)."""
    return [flag(args) if callable(flag) else flag for flag in benchmark.variants[variant]]


def run_one(benchmark, args, variant, seed, records, unseen):
    """Trains one variant with one seed, stage by stage, resuming what an
    earlier call finished; returns `{stage: {split: scores}, "seconds": ...}`.
    Each evaluation's captions are kept (`keep_predictions`)."""
    from etenet_tf.files import write_json
    model_dir = os.path.join(args.work_dir, f"{variant}_seed{seed}")
    log = os.path.join(args.work_dir, f"{variant}_seed{seed}.log")
    os.makedirs(model_dir, exist_ok=True)
    saved = os.path.join(model_dir, "quality.json")
    result = {"seconds": {}}
    if os.path.exists(saved):
        with open(saved, encoding="utf-8") as f:
            result = json.load(f)
    # the variant's flags go to evaluate too: the preset's model flags alone
    # would contradict the stored model's (a one-line error, exit 2)
    flags = [f"--flagfile={args.flagfile}", f"--model_dir={model_dir}",
             *variant_flags(benchmark, args, variant)]
    for stage in args.stages.split(","):
        if stage not in result["seconds"]:
            result["seconds"][stage] = run_main(
                flags + [f"--records_dir={records}", f"--seed={seed}", f"--stage={stage}"], log)
            write_json(saved, result)
        for split_name, records_dir in (("test", records), ("unseen", unseen)):
            if split_name in result.get(stage, {}):
                continue
            run_main(flags + [f"--records_dir={records_dir}", "--stage=evaluate",
                              f"--checkpoint={stage}"], log)
            result.setdefault(stage, {})[split_name] = read_test_scores(model_dir, stage)
            keep_predictions(model_dir, stage, split_name)
            write_json(saved, result)
    return result


def _spread(values):
    return [min(values), statistics.median(values), max(values), len(values)]


def summarise(runs, metrics):
    """min / median / max (and count) over seeds:
    `{variant: {stage: {split: {metric: [min, median, max, seeds]}}, "seconds": ...}}`."""
    table = {}
    for variant, by_seed in runs.items():
        seeds = list(by_seed.values())
        stages = list(dict.fromkeys(s for r in seeds for s in r if s != "seconds"))
        for stage in stages:
            splits = dict.fromkeys(split for r in seeds for split in r.get(stage, {}))
            for split in splits:
                for metric in metrics:
                    values = [r[stage][split][metric] for r in seeds
                              if metric in r.get(stage, {}).get(split, {})]
                    if values:
                        table.setdefault(variant, {}).setdefault(stage, {}).setdefault(
                            split, {})[metric] = _spread(values)
        for stage in dict.fromkeys(s for r in seeds for s in r.get("seconds", {})):
            values = [r["seconds"][stage] for r in seeds if stage in r.get("seconds", {})]
            table.setdefault(variant, {}).setdefault("seconds", {})[stage] = _spread(values)
    return table


def format_table(table, metrics):
    """The summary as Markdown: scores (min / median / max), then wall times."""
    lines = ["| variant | stage | split | seeds | " + " | ".join(metrics) + " |",
             "|---" * (4 + len(metrics)) + "|"]
    for variant, stages in table.items():
        for stage, splits in stages.items():
            if stage == "seconds":
                continue
            for split, values in splits.items():
                cells = ["{:.2f} / {:.2f} / {:.2f}".format(*values[m][:3]) if m in values
                         else "-" for m in metrics]
                seeds = max(v[3] for v in values.values())
                lines.append(f"| {variant} | {stage} | {split} | {seeds} | "
                             + " | ".join(cells) + " |")
    timed = {variant: stages for variant, stages in table.items() if "seconds" in stages}
    if timed:
        lines.append("")
    for variant, stages in timed.items():
        lines.append(f"| {variant} | " + " | ".join(
            "{} {:.0f} / {:.0f} / {:.0f} s".format(stage, *v[:3])
            for stage, v in stages.get("seconds", {}).items()) + " |")
    return "\n".join(lines)


def parser(benchmark, description):
    """The command line of a quality benchmark."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default=",".join(benchmark.variants))
    p.add_argument("--stages", default="pretrain,finetune,scst",
                   help="training stages to run and evaluate, in order")
    p.add_argument("--flagfile", default=os.path.join(ROOT, "flags", benchmark.flagfile))
    p.add_argument("--work_dir", default=os.path.join(ROOT, "runs", benchmark.name))
    p.add_argument("--unseen_seed", type=int, default=benchmark.unseen_seed,
                   help="generation seed of the unseen test clips (training uses the preset's)")
    p.add_argument("--output", default=os.path.join(ROOT, "benchmarks",
                                                    f"{benchmark.name}.json"))
    return p


def check_args(p, benchmark, args):
    """`p.error` (exit 2) for unknown variants or seeds that are not integers."""
    unknown = set(args.variants.split(",")) - set(benchmark.variants)
    if unknown:
        p.error(f"unknown variant(s) {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(benchmark.variants)}")
    try:
        [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, not {args.seeds!r}")
    return args


def prepare_key(benchmark, flags):
    """The flags of `flags` that change what `prepare` writes."""
    return tuple(f for f in flags if f.split("=")[0] in benchmark.prepare_flags)


def prepare(benchmark, args, flags=()):
    """`(records, unseen)`: the records of the preset with `flags`' prepare
    flags (`Benchmark.prepare_flags`), and of the unseen clips (whose own
    flags win), prepared when missing (`prepare` keeps complete records)."""
    extra = prepare_key(benchmark, flags)
    suffix = "".join("_" + f.lstrip("-").replace("=", "") for f in extra)
    records = os.path.join(args.work_dir, "records" + suffix)
    unseen = os.path.join(args.work_dir, "unseen", "records" + suffix)
    log = os.path.join(args.work_dir, "prepare.log")
    run_main([f"--flagfile={args.flagfile}", f"--records_dir={records}", "--stage=prepare",
              *extra], log)
    run_main([f"--flagfile={args.flagfile}", f"--records_dir={unseen}", "--stage=prepare",
              *extra, *benchmark.unseen_flags(args.unseen_seed)], log)
    return records, unseen


def run(benchmark, args):
    """Prepares, trains and evaluates every variant and seed asked for;
    prints the summary and saves it with every run in `args.output`."""
    from etenet_tf.files import write_json
    os.makedirs(args.work_dir, exist_ok=True)
    prepared = {(): prepare(benchmark, args)}
    variants = args.variants.split(",")
    if benchmark.before_runs is not None:
        benchmark.before_runs(args, variants)
    runs = {}
    for variant in variants:
        flags = variant_flags(benchmark, args, variant)
        key = prepare_key(benchmark, flags)
        if key not in prepared:
            prepared[key] = prepare(benchmark, args, key)
        for seed in [int(s) for s in args.seeds.split(",")]:
            print(f"{variant}, seed {seed} ...", file=sys.stderr, flush=True)
            runs.setdefault(variant, {})[seed] = run_one(benchmark, args, variant, seed,
                                                         *prepared[key])
    table = summarise(runs, benchmark.metrics)
    write_json(args.output, {"settings": vars(args), "runs": runs, "summary": table})
    print(format_table(table, benchmark.metrics))
    print(f"\n(min / median / max over seeds {args.seeds}; JSON saved to {args.output})")
    return table

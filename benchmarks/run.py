"""Runs the benchmarks side by side and prints JSON and a table.

    python -m benchmarks.run                       # all of them
    python -m benchmarks.run --only=caption,decode # some

Each result compares two measurements taken in the same run on the same
machine; `--output` keeps the JSON (machine facts included).
"""

import argparse
import importlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from etenet_tf.files import write_json  # noqa: E402

# name -> module of `benchmarks`. The modules (and TensorFlow) are imported
# in main(), not here: the caption library benchmark starts decoding worker
# processes, which import this module again as `__mp_main__`, and would
# otherwise each load TensorFlow.
BENCHMARKS = {
    "pretrain_cache": "pretrain_cache",      # 1
    "finetune_compute": "finetune_compute",  # 2 and 3
    "caption": "caption_throughput",         # 4
    "decode": "prepare_decode",              # 5
    "scoring": "scoring",                    # 6
    "grid_cost": "grid_cost",                # 7
    "scst_reward": "scst_reward",            # 8
    "caption_library": "caption_library",    # 9
    "beam_prepare": "beam_prepare",          # 10 (skipped without apache-beam)
    "finetune_memory": "finetune_memory",    # 11
    "epoch_end": "epoch_end",                # 12
}


def _module(name):
    return importlib.import_module(f"benchmarks.{BENCHMARKS[name]}")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Context:
    """Settings plus the shapes dataset, prepared on first use."""

    def __init__(self, args):
        self.__dict__.update(vars(args))
        self._shapes = {}

    def shapes(self, image_size=None):
        size = image_size or self.image_size
        if size not in self._shapes:
            from benchmarks import common
            self._shapes[size] = common.ShapesData(self.work_dir, self.frames, size,
                                                   self.train_per_combination)
        return self._shapes[size]


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(BENCHMARKS),
                   help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    p.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results.json"))
    p.add_argument("--work_dir", default=os.path.join(ROOT, "runs", "benchmarks"))
    p.add_argument("--shared_dir", default=os.path.join(ROOT, "..", "shared", "data"),
                   help="shared/data with videos/ and msrvtt/ (benchmarks 5 and 6)")
    p.add_argument("--frames", type=int, default=8, help="training benchmarks: frames/video")
    p.add_argument("--image_size", type=int, default=96, help="finetune benchmarks: frame side")
    p.add_argument("--pretrain_image_size", type=int, default=299,
                   help="pretrain benchmark: frame side (the encoder cost the cache saves "
                        "grows with it; 299 is InceptionV3's own size)")
    p.add_argument("--batch_size", type=int, default=16, help="training benchmarks: videos/step")
    p.add_argument("--train_per_combination", type=int, default=2,
                   help="shapes train clips per combination (48 combinations)")
    p.add_argument("--caption_image_size", type=int, default=299,
                   help="captioning and decode benchmarks: frame side")
    p.add_argument("--caption_batch", type=int, default=2, help="videos per captioning call")
    p.add_argument("--beam_size", type=int, default=5)
    p.add_argument("--max_length", type=int, default=20)
    p.add_argument("--vocabulary_size", type=int, default=10000)
    p.add_argument("--grid_image_size", type=int, default=299,
                   help="grid cost benchmark: frame side (InceptionV3's final map is 8x8 at 299)")
    p.add_argument("--grid_frames", type=int, default=16, help="grid cost benchmark: frames/clip")
    p.add_argument("--grids", default="1,2,4,8", help="grid cost benchmark: grids to compare "
                   "(the first is the baseline)")
    p.add_argument("--scst_samples", type=int, default=5, help="scst benchmark: samples/clip")
    p.add_argument("--library_clips", type=int, default=200,
                   help="caption library benchmark: clips captioned each way")
    p.add_argument("--library_image_size", type=int, default=299)
    p.add_argument("--library_frames", type=int, default=8)
    p.add_argument("--library_batch", type=int, default=8,
                   help="caption library benchmark: --caption_batch_size")
    p.add_argument("--library_workers", type=int, default=0,
                   help="caption library benchmark: decoding processes (0: one per CPU)")
    p.add_argument("--library_rounds", type=int, default=5,
                   help="caption library benchmark: turns the three ways take")
    p.add_argument("--library_rss_clips", default="100,1000",
                   help="caption library benchmark: the two library sizes whose peak memory "
                        "is compared ('' to skip)")
    p.add_argument("--library_rss_image_size", type=int, default=160)
    p.add_argument("--library_rss_frames", type=int, default=4)
    p.add_argument("--beam_workers", type=int, default=2,
                   help="Beam prepare benchmark: worker processes of both runners")
    p.add_argument("--beam_repeats", type=int, default=4,
                   help="Beam prepare benchmark: each clip is prepared this many times (under "
                        "other names), so start-up costs weigh as on a real data set")
    p.add_argument("--beam_videos_per_shard", type=int, default=16,
                   help="Beam prepare benchmark: videos per shard")
    p.add_argument("--memory_image_size", type=int, default=299,
                   help="finetune memory benchmark: frame side")
    p.add_argument("--memory_frames", type=int, default=16,
                   help="finetune memory benchmark: frames/clip")
    p.add_argument("--memory_batch_sizes", default="1,2",
                   help="finetune memory benchmark: batch sizes, each in a fresh process (two "
                        "or more give the memory per video and the GPU batch estimates)")
    p.add_argument("--memory_encoders", default="inception_v3",
                   help="finetune memory benchmark: encoders (e.g. "
                        "inception_v3,inception_resnet_v2)")
    p.add_argument("--memory_configs", default="f32,f32_blocks,f32_planned,bf16,bf16_planned",
                   help="finetune memory benchmark: configurations, of "
                        "f32, f32_blocks, f32_planned, bf16, bf16_planned")
    p.add_argument("--memory_repeats", type=int, default=3,
                   help="finetune memory benchmark: timed steps after the first")
    p.add_argument("--epoch_end_batch_size", type=int, default=2,
                   help="epoch end benchmark: videos per step (the shapes records' 96 train "
                        "clips make 48 steps at 2)")
    p.add_argument("--epoch_end_step_seconds", type=float, default=0.3,
                   help="epoch end benchmark: how long the consumer takes per batch, as a "
                        "training step would")
    p.add_argument("--epoch_end_epochs", type=int, default=3,
                   help="epoch end benchmark: epochs timed each way")
    p.add_argument("--mixed_precision", choices=("none", "bfloat16"), default="none",
                   help="precision of the in-process benchmarks (finetune_memory sets its own)")
    args = p.parse_args(argv)
    unknown = set(args.only.split(",")) - set(BENCHMARKS)
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from "
                f"{', '.join(BENCHMARKS)}")
    return args


def table(results):
    rows = [("benchmark", "measured", "compared with", "ratio", "target", "met", "cpu used")]
    for r in results:
        if "skipped" in r:
            rows.append((r["title"], "skipped: " + r["skipped"], "", "", "", "", ""))
            continue
        ratio = r["ratio"]
        shown = "" if ratio is None else (f"{ratio:.1%}" if "%" in r["target"] else f"{ratio:.1f}x")
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        rows.append((r["title"], r["a"], r["b"], shown, r["target"], met,
                     f"{r['process_cpu_utilisation']:.0%}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None):
    args = parse(argv)
    import keras

    from benchmarks import common
    if args.mixed_precision == "bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    ctx = Context(args)
    machine = common.machine()
    results, started = [], time.time()
    for name in args.only.split(","):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        start, cpu = time.time(), common.cpu_times()
        out = _module(name).run(ctx)
        wall = time.time() - start
        # a shared (virtual) machine can lose cores to its neighbours: say so
        share = common.cpu_share(cpu, common.cpu_times(), wall, machine["cores"])
        for r in out if isinstance(out, list) else [out]:
            r.update(benchmark=name, wall_seconds=wall, **share)
            results.append(r)
    report = {"machine": machine, "settings": vars(args), "results": results,
              "total_seconds": time.time() - started}
    write_json(args.output, report)
    print(json.dumps(report, indent=1))
    print()
    print(table(results))
    print(f"\n(JSON saved to {args.output})")


if __name__ == "__main__":
    main()

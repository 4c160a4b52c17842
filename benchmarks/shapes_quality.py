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
stage and split, and the wall time of each stage. Resumable: the engine
(`benchmarks/quality.py`) keeps every finished stage and evaluation.

Variants (all on the preset's budget: encoder, layer, epochs, rates):
    paper:    --spatial_grid=1 --temporal=none  (the paper's EtENet)
    temporal: --spatial_grid=1 --temporal=gru
    spatial:  --spatial_grid=3 --temporal=none
    position: --spatial_grid=3 --temporal=position
    conv:     --spatial_grid=3 --temporal=conv
    both:     --spatial_grid=3 --temporal=gru   (the preset)
    transformer: the preset with the Transformer decoder (--decoder=transformer,
              2 layers, 4 heads, model size --embedding_dim=64, feed-forward 256)
"""

from benchmarks import quality

VARIANTS = {
    "paper": ["--spatial_grid=1", "--temporal=none"],
    "temporal": ["--spatial_grid=1", "--temporal=gru"],
    "spatial": ["--spatial_grid=3", "--temporal=none"],
    "position": ["--spatial_grid=3", "--temporal=position"],
    "conv": ["--spatial_grid=3", "--temporal=conv"],
    "both": ["--spatial_grid=3", "--temporal=gru"],
    "transformer": ["--spatial_grid=3", "--temporal=gru", "--decoder=transformer",
                    "--num_layers=2", "--num_heads=4", "--feedforward_dim=256"],
}
METRICS = ("CIDEr", "acc_colour", "acc_shape", "acc_direction", "acc_all")
BENCHMARK = quality.Benchmark(
    name="shapes_quality", flagfile="shapes.cfg", variants=VARIANTS, metrics=METRICS,
    # the unseen clips: another generation seed, one clip per combination and split
    unseen_flags=lambda seed: [f"--shapes_seed={seed}", "--shapes_train_per_combination=1"],
    unseen_seed=777)


def parse(argv):
    p = quality.parser(BENCHMARK, __doc__.splitlines()[0])
    return quality.check_args(p, BENCHMARK, p.parse_args(argv))


def main(argv=None):
    return quality.run(BENCHMARK, parse(argv))


if __name__ == "__main__":
    main()

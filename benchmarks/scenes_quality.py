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
    standin_transformer: standin_paper with the Transformer decoder
                       (--decoder=transformer, 2 layers, 4 heads, model size
                       --embedding_dim=64, feed-forward 256)
    grid1_gru, grid3_none, grid3_position, grid3_conv:
                       the ablations (random encoder); grid 3 + gru is `preset`
    hires_grid8:       the preset at 150 px (the mixed2 map 16x16, not 7x7)
                       pooled to 8x8 cells, on records prepared at 150 px
                       (`prepare_flags`): does seeing the objects
                       at more pixels and cells help?
    standin_data3000:  standin_preset on 3000 training clips, not 600 (records
                       of their own): is the amount of data the limit?
    standin_epochs100: standin_preset pretrained 100 epochs, not 20 (the
                       steps of standin_data3000, on the same 600 clips):
                       is it the number of steps?
    standin_data3000_e60: standin_data3000 pretrained 60 epochs in batches
                       of 64 (steps 4x as fast per clip), picked by
                       validation CIDEr: more steps on more clips
    shapesenc_data3000_e60: the same with the diagnostic encoder that knows
                       the scenes shapes (`standin_encoder --objects=scenes`,
                       not a stand-in for ImageNet): what the decoder does
                       when the encoder sees the shape better
    standin_delta_data3000_e60: standin_data3000_e60 with --temporal=delta
                       (each token also carries its change from the frame
                       before and to the frame after): the option that let
                       oracle features say the events
    smallstandin_delta_data3000_e60: the same with a stand-in trained on its
                       glyphs (not the scenes shapes) drawn at the scenes
                       objects' sizes (`standin_encoder
                       --glyph_radius=0.038,0.17`): does a stand-in that
                       sees small objects keep their shape?
The stand-in encoder's weights come from `benchmarks.standin_encoder`
(built first when `--standin_weights` does not exist), and so do the
diagnostic encoder's (`--shapes_encoder_weights`) and the small-glyph
stand-in's (`--small_standin_weights`).
"""

import os
import subprocess
import sys

from benchmarks import quality

ROOT = quality.ROOT


# the encoders this benchmark builds with `benchmarks.standin_encoder`:
# `--<name>` (its weights file) -> (default directory under runs/, what it
# is, the builder's options)
BUILT_ENCODERS = {
    # the stand-in for ImageNet: its glyphs at the builder's defaults
    "standin_weights": ("standin", "the stand-in encoder's weights", ()),
    # the diagnostic encoder: the scenes shapes at the clips' sizes (radius
    # 0.038-0.17 of the side: small / large, shrunk / grown)
    "shapes_encoder_weights": ("standin_scenes", "the diagnostic encoder's weights",
                               ("--objects=scenes", "--glyph_radius=0.038,0.17")),
    # the stand-in's glyphs (not the scenes shapes) at the scenes objects' sizes
    "small_standin_weights": ("standin_small", "the small-glyph stand-in's weights",
                              ("--glyph_radius=0.038,0.17",)),
}


def _weights_flag(name):
    """A variant's `--encoder_weights` flag for the built encoder `name`
    (resolved against the parsed arguments)."""
    def flag(args):
        return f"--encoder_weights={os.path.abspath(getattr(args, name))}"
    flag.encoder = name
    return flag


_standin_flag = _weights_flag("standin_weights")
_shapes_encoder_flag = _weights_flag("shapes_encoder_weights")
_small_standin_flag = _weights_flag("small_standin_weights")
LONG_RUN = ["--scenes_train_videos=3000", "--pretrain_epochs=60", "--batch_size=64",
            "--best_metric=CIDEr", "--spatial_grid=3"]

VARIANTS = {
    "paper": ["--spatial_grid=1", "--temporal=none"],
    "standin_paper": [_standin_flag, "--spatial_grid=1", "--temporal=none"],
    "standin_transformer": [_standin_flag, "--spatial_grid=1", "--temporal=none",
                            "--decoder=transformer", "--num_layers=2", "--num_heads=4",
                            "--feedforward_dim=256"],
    "preset": ["--spatial_grid=3", "--temporal=gru"],
    "standin_preset": [_standin_flag, "--spatial_grid=3", "--temporal=gru"],
    "grid1_gru": ["--spatial_grid=1", "--temporal=gru"],
    "grid3_none": ["--spatial_grid=3", "--temporal=none"],
    "grid3_position": ["--spatial_grid=3", "--temporal=position"],
    "grid3_conv": ["--spatial_grid=3", "--temporal=conv"],
    "hires_grid8": ["--image_size=150", "--spatial_grid=8", "--temporal=gru"],
    "standin_data3000": [_standin_flag, "--scenes_train_videos=3000", "--spatial_grid=3",
                         "--temporal=gru"],
    "standin_epochs100": [_standin_flag, "--pretrain_epochs=100", "--spatial_grid=3",
                          "--temporal=gru"],
    "standin_data3000_e60": [_standin_flag, *LONG_RUN, "--temporal=gru"],
    "shapesenc_data3000_e60": [_shapes_encoder_flag, *LONG_RUN, "--temporal=gru"],
    "standin_delta_data3000_e60": [_standin_flag, *LONG_RUN, "--temporal=delta"],
    "smallstandin_delta_data3000_e60": [_small_standin_flag, *LONG_RUN, "--temporal=delta"],
}
METRICS = ("CIDEr", "acc_subject", "acc_action", "acc_object", "acc_region", "acc_order",
           "acc_all")


def build_standin(args, variants):
    """The stand-in's (and the diagnostic encoder's) weights, built first
    when a variant needs them and the file does not exist."""
    needed = {flag.encoder for v in variants for flag in VARIANTS[v]
              if hasattr(flag, "encoder")}
    for name, (_, _, options) in BUILT_ENCODERS.items():
        path = getattr(args, name)
        if name in needed and not os.path.exists(path):
            subprocess.run([sys.executable, "-m", "benchmarks.standin_encoder",
                            f"--output={path}", *options], cwd=ROOT, check=True,
                           env=dict(os.environ, PYTHONPATH=ROOT))


BENCHMARK = quality.Benchmark(
    name="scenes_quality", flagfile="scenes.cfg", variants=VARIANTS, metrics=METRICS,
    # the unseen clips: another generation seed (its test split is what counts)
    unseen_flags=lambda seed: [f"--scenes_seed={seed}", "--scenes_train_videos=16"],
    unseen_seed=8765, before_runs=build_standin,
    prepare_flags=("--image_size", "--frames", "--scenes_seed", "--scenes_train_videos",
                   "--scenes_eval_videos", "--scenes_clutter", "--scenes_max_objects"))


def parse(argv):
    p = quality.parser(BENCHMARK, __doc__.splitlines()[0])
    for name, (directory, what, options) in BUILT_ENCODERS.items():
        built = f"standin_encoder {' '.join(options)}; " if options else ""
        p.add_argument(f"--{name}",
                       default=os.path.join(ROOT, "runs", directory, "standin.weights.h5"),
                       help=f"{what} ({built}built when missing)")
    return quality.check_args(p, BENCHMARK, p.parse_args(argv))


def main(argv=None):
    return quality.run(BENCHMARK, parse(argv))


if __name__ == "__main__":
    main()

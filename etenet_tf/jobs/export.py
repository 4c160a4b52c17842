"""`--stage=export`: a SavedModel that TF Serving loads (see `etenet_tf.export`)."""

from etenet_tf.export import package, serving
from etenet_tf.jobs.registry import checkpoint_stages
from etenet_tf.run_dir import RunDir


def run(config):
    """Exports the `--checkpoint` stage's best model (of `--model_dir`, or
    the `--model` package) as a SavedModel and as a model package
    (`export.package`); returns the SavedModel version's path."""
    flags = dict(sorted(config.to_flat().items()))  # the run's flags, for flags.json
    if config.source.model:
        config = config.replace(model_dir=package.model_directory(config), model="")
    config.export.validate()
    config.decoding.validate()
    # where the export goes is checked before the model is loaded
    serving.check_export_target(config.export)
    run_dir = RunDir(config.model_dir)
    stage = checkpoint_stages(config.evaluation.checkpoint, run_dir)[-1]
    model = run_dir.load_trained_model(stage)
    path = serving.export(model, config.export, config.decoding,
                          max_frame_pixels=config.data.max_frame_pixels,
                          input_spec=run_dir.read_input_spec())
    print(f"exported the {stage} model to {path} (signatures: serving_default <- frames_jpeg, "
          f"serving_frames <- frames)")
    packaged = package.write(model, run_dir, stage, config.export.package_path,
                             records_dir=config.data.records_dir, flags=flags)
    print(f"model package (weights, config, vocabulary, model card): {packaged}; load it with "
          f"--model={packaged}")
    return path

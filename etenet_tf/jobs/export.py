"""`--stage=export`: a SavedModel that TF Serving loads (see `etenet_tf.export`)."""

from etenet_tf.export import serving
from etenet_tf.jobs.registry import checkpoint_stages
from etenet_tf.run_dir import RunDir


def run(config):
    """Exports the `--checkpoint` stage's best model; returns the version's path."""
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
    return path

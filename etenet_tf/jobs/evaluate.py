"""`--stage=evaluate`: caption a split with beam search and score it."""

import os

from etenet_tf import files
from etenet_tf.data import attributes as attributes_data
from etenet_tf.data import prepare as prepare_lib
from etenet_tf.data import records
from etenet_tf.errors import MissingInputError
from etenet_tf.evaluation import metrics as metrics_lib
from etenet_tf.evaluation.evaluate import evaluate_model
from etenet_tf.export import package
from etenet_tf.files import write_json
from etenet_tf.jobs.registry import checkpoint_stages
from etenet_tf.progress import Progress
from etenet_tf.run_dir import RunDir
from etenet_tf.training import stages as stages_lib


def run(config):
    """Evaluates the chosen checkpoint(s) on `--split`; prints a table and
    writes `<model_dir>/evaluation/<stage>_<split>_{predictions,scores}.json`
    (the scores name the configuration the weights came from: `"config":
    {"stage", "path", "sha256"}` of `<model_dir>/<stage>/config.json`).

    Returns:
        list of `(stage, scores)`.
    """
    split, decoding = config.evaluation.split, config.decoding
    config.evaluation.validate()
    decoding.validate()
    run_dir = RunDir(package.model_directory(config))  # where the model comes from
    out = RunDir(config.model_dir).evaluation_dir  # where its scores go
    records_dir = config.data.records_dir
    info = prepare_lib.load_dataset_info(records_dir)
    shards = records.list_shards(records_dir, split)
    if not shards:
        raise MissingInputError(f"no {split} records in {records_dir}")
    files.ensure_directory(out, "model_dir")
    stages = checkpoint_stages(config.evaluation.checkpoint, run_dir, many=True)
    attributes = attributes_data.load(records_dir)
    rows = []
    with records.reporting_corruption(
            (records_dir, f"re-run --stage=prepare with the same flags (--records_dir="
                          f"{records_dir}): it checks every shard and writes damaged ones again")):
        for stage in stages:
            model = run_dir.load_trained_model(stage)
            with Progress(f"evaluate {stage}", info["splits"].get(split, {}).get("videos"),
                          show=config.progress) as progress:
                predictions, scores = evaluate_model(
                    model, shards, image_size=info["image_size"], decoding=decoding,
                    batch_size=config.training.eval_batch_size, attributes=attributes,
                    progress=progress.advance)
                progress.finish(f"evaluate: {stage} checkpoint, {len(predictions)} {split} "
                                f"videos captioned and scored in {progress.elapsed:.1f}s")
            write_json(os.path.join(out, f"{stage}_{split}_predictions.json"), predictions)
            write_json(os.path.join(out, f"{stage}_{split}_scores.json"),
                       dict(scores, config=stages_lib.config_reference(run_dir, stage)))
            rows.append((stage, scores))
    print(f"{split} split, beam size {decoding.beam_size}:")
    print(metrics_lib.format_table(rows))
    print(f"predictions and scores: {out}")
    return rows

"""`--stage=evaluate`: caption a split with beam search and score it with
BLEU/METEOR/ROUGE-L/CIDEr-D and, when the records have known attributes,
attribute accuracy (`acc_<attribute>`, `acc_all`)."""

import os

from etenet_tf.data import attributes as attributes_data
from etenet_tf.data import pipeline
from etenet_tf.data import prepare as prepare_lib
from etenet_tf.data import records
from etenet_tf.evaluation import attributes as attributes_lib
from etenet_tf.evaluation import metrics as metrics_lib
from etenet_tf.evaluation import predict
from etenet_tf import files as files_lib
from etenet_tf.files import write_json
from etenet_tf.training import checkpoints as checkpoints_lib
from etenet_tf.training import stages as stages_lib


def evaluate_stage(cfg, stage, files, image_size):
    """Predictions and scores of one stage's best model on `files`."""
    model, stage = stages_lib.load_trained_model(cfg.model_dir, stage)
    ds = pipeline.eval_dataset(files, "frames", cfg.eval_batch_size, image_size=image_size)
    predictions, references = predict.predict_dataset(
        model, ds, "frames", beam_size=cfg.beam_size, max_length=cfg.max_decode_length,
        length_penalty=cfg.length_penalty,
    )
    scored = {k: v for k, v in references.items() if v}
    scores = metrics_lib.score(scored, {k: predictions[k] for k in scored}) if scored else {}
    truth, spec = attributes_data.load(cfg.records_dir)
    if truth:
        scores.update(attributes_lib.accuracy(predictions, truth, spec))
    out = os.path.join(cfg.model_dir, "evaluation")
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, f"{stage}_{cfg.split}_predictions.json"), predictions)
    write_json(os.path.join(out, f"{stage}_{cfg.split}_scores.json"),
                    dict(scores, videos=len(predictions), scored_videos=len(scored),
                         beam_size=cfg.beam_size))
    return stage, scores


def run_evaluate(cfg):
    """Evaluates the chosen checkpoint(s); prints a table.

    Returns:
        list of `(stage, scores)`.
    """
    info = prepare_lib.load_dataset_info(cfg.records_dir)
    files = records.list_shards(cfg.records_dir, cfg.split)
    if not files:
        raise FileNotFoundError(f"no {cfg.split} records in {cfg.records_dir}")
    files_lib.ensure_directory(os.path.join(cfg.model_dir, "evaluation"), "model_dir")
    if cfg.checkpoint == "both":
        wanted = [s for s in stages_lib.STAGES
                  if checkpoints_lib.read_best(os.path.join(cfg.model_dir, s))]
        if not wanted:
            raise checkpoints_lib.NoCheckpointError(
                f"no trained checkpoint in {cfg.model_dir}: run --stage=pretrain first")
    else:
        wanted = [cfg.checkpoint]
    with stages_lib.reading_records(cfg):
        rows = [evaluate_stage(cfg, stage, files, info["image_size"]) for stage in wanted]
    print(f"{cfg.split} split, beam size {cfg.beam_size}:")
    print(metrics_lib.format_table(rows))
    print(f"predictions and scores: {os.path.join(cfg.model_dir, 'evaluation')}")
    return rows

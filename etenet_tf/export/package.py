"""A trained model in one piece (`--stage=export` writes it; `--model` reads it).

A model package is a directory laid out as a minimal model directory
(`etenet_tf.run_dir`), so every stage that loads a model from
`--model_dir` loads it from a package unchanged:

    <package>/
        README.md               model card (training data, scores, use, limits)
        metadata.json           format and version, stage, training data, versions
        model_config.json       the captioner's `ModelConfig`
        vocab.txt               its vocabulary
        input_spec.json         frames per clip and frame size it takes
        cider_df.npz            CIDEr-D document frequencies of the training
                                references (when the records had them)
        flags.json              the flags of the export run
        scores.json             `{"<stage>_<split>": scores}` of `evaluate`
        <stage>/best/           the weights (a TF checkpoint of the model
                                only) and best.json

`--model=PATH` names such a directory; `--model=hf://owner/name` fetches
one from the Hugging Face Hub with `huggingface_hub.snapshot_download`
(as Keras' own `hf://` loading does) into its cache. Offline and not
cached, it is one error line saying what to download and where to put it.
"""

import datetime
import glob
import json
import os
import re
import shutil

from etenet_tf import __version__, files
from etenet_tf.errors import MissingInputError, UsageError
from etenet_tf.files import write_json, write_text
from etenet_tf.run_dir import RunDir

FORMAT = "etenet_tf.model_package"
FORMAT_VERSION = 1
METADATA = "metadata.json"
SCORES = "scores.json"
FLAGS = "flags.json"
CARD = "README.md"
FREQUENCIES = "cider_df.npz"
DATASET = "dataset.json"
HF_PREFIX = "hf://"
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class ModelPackageError(UsageError):
    """`--model` names something that is not a model package."""


# -- writing ---------------------------------------------------------------


def collect_scores(run_dir, stage):
    """`{"<stage>_<split>": scores}` of what `evaluate` wrote for `stage`
    (and what a package it came from carried)."""
    scores = {}
    carried = os.path.join(run_dir.path, SCORES)
    if os.path.isfile(carried):
        with open(carried, encoding="utf-8") as f:
            scores.update(json.load(f))
    for path in sorted(glob.glob(os.path.join(run_dir.evaluation_dir, f"{stage}_*_scores.json"))):
        key = os.path.basename(path)[: -len("_scores.json")]
        with open(path, encoding="utf-8") as f:
            scores[key] = json.load(f)
    return scores


def training_data(run_dir, records_dir):
    """What the model was trained on: the records' `dataset.json` (or what
    a package it came from recorded), or None when neither is there."""
    carried = os.path.join(run_dir.path, METADATA)
    if os.path.isfile(carried):
        with open(carried, encoding="utf-8") as f:
            return json.load(f).get("training_data")
    path = os.path.join(records_dir, DATASET) if records_dir else ""
    if path and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return None


def write(model, run_dir, stage, path, *, records_dir, flags):
    """Writes the package of `stage`'s best model, atomically (a package
    already at `path` is replaced whole).

    Args:
        model: the loaded model (its weights are written).
        run_dir: the `RunDir` it came from (config, vocabulary, scores).
        stage: the training stage it is the best of.
        path: the package directory.
        records_dir: the training records (dataset, CIDEr-D frequencies).
        flags: `{flag: value}` of the export run, kept in `flags.json`.

    Returns:
        `path`.
    """
    import tensorflow as tf

    best = dict(run_dir.read_best(stage) or {"step": 0})
    scores = collect_scores(run_dir, stage)
    data = training_data(run_dir, records_dir)
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "stage": stage,
        "etenet_tf_version": __version__, "tensorflow_version": tf.__version__,
        "keras_version": _keras_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "training_data": data, "input_spec": run_dir.read_input_spec(),
        "best": {k: best.get(k) for k in ("metric", "value", "epoch", "step")},
    }
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(os.path.join(tmp, stage, "best"))
        for name in (RunDir.MODEL_CONFIG, RunDir.VOCABULARY, RunDir.INPUT_SPEC):
            shutil.copyfile(os.path.join(run_dir.path, name), os.path.join(tmp, name))
        frequencies = [os.path.join(run_dir.path, FREQUENCIES)]
        if records_dir:
            frequencies.append(os.path.join(records_dir, FREQUENCIES))
        for source in frequencies:
            if os.path.isfile(source):
                shutil.copyfile(source, os.path.join(tmp, FREQUENCIES))
                metadata["cider_df"] = FREQUENCIES
                break
        tf.train.Checkpoint(model=model).write(
            os.path.join(tmp, stage, "best", f"ckpt-{best.get('step', 0)}"))
        write_json(os.path.join(tmp, stage, "best", "best.json"), best)
        write_json(os.path.join(tmp, FLAGS), flags)
        write_json(os.path.join(tmp, SCORES), scores)
        write_json(os.path.join(tmp, METADATA), metadata)
        write_text(os.path.join(tmp, CARD), model_card(metadata, run_dir.read_model_config(),
                                                         len(run_dir.read_vocabulary()), scores))
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _replace_dir(tmp, path):
    """Puts directory `tmp` at `path` (an old package there goes only once
    the new one is in place)."""
    if not os.path.exists(path):
        os.replace(tmp, path)
        return
    if not os.path.isfile(os.path.join(path, METADATA)):
        raise files.WriteTargetError(
            f"--package_dir={path} exists and is not a model package; give another "
            "--package_dir or move it away")
    old = f"{path}.old-{os.getpid()}"
    os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def _keras_version():
    import keras
    return keras.__version__


# -- the model card --------------------------------------------------------

_CARD_METRICS = ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "attribute_accuracy")


def _is_spread(value):
    return isinstance(value, dict) and {"min", "median", "max"} <= set(value)


def _is_score(value):
    return _is_spread(value) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _cell(value):
    """A score as text: a number, or `median (min-max, n runs)` for a
    measured spread (`{"min", "median", "max", "n"}`)."""
    if _is_spread(value):
        runs = f", {value['n']} runs" if "n" in value else ""
        return f"{value['median']:.4g} ({value['min']:.4g}-{value['max']:.4g}{runs})"
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return "-"


def scores_table(scores, missing=None):
    """The Markdown scores table of a package (one row per stage and split),
    or `missing` when there are none."""
    if not scores:
        return missing or ("No scores: the model directory had no `evaluate` results when "
                           "this package was written (run `--stage=evaluate` first, then "
                           "export again).")
    from etenet_tf.evaluation.evaluate import COUNTS  # (beside the scores, not scores)
    seen = list(dict.fromkeys(name for row in scores.values() for name in row
                              if name not in COUNTS and _is_score(row[name])))
    # what the captions get right is always shown (acc_all first, then each
    # slot); other metrics fill the table to 8 columns
    names = [n for n in _CARD_METRICS if n in seen]
    attributes = dict.fromkeys(["acc_all", *sorted(n for n in seen if n.startswith("acc_"))])
    names += [n for n in attributes if n in seen and n not in names]
    names += [n for n in seen if n not in names][: max(0, 8 - len(names))]
    spread = any(_is_spread(row.get(n)) for row in scores.values() for n in names)
    lines = ["| run | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, row in scores.items():
        lines.append(f"| {key} | " + " | ".join(_cell(row.get(n)) for n in names) + " |")
    lines.append("")
    lines.append("Each cell is median (min-max) over the runs measured." if spread else
                 "One training run: the spread over seeds was not measured for this model.")
    return "\n".join(lines)


def describe_decoder(model):
    """The decoder of a `ModelConfig.to_dict()` in words, from its
    `DECODERS` entry: its title and the options it reads, e.g. "a
    Transformer decoder (embedding_dim 64, num_layers 2, ...)"."""
    from etenet_tf.model.decoders import DECODERS
    spec = DECODERS[model.get("decoder", "sa_lstm")]
    options = ", ".join(f"{name} {model.get(name)}" for name in spec.options)
    return f"a {spec.title} decoder ({options})"


def model_card(metadata, model_config, vocabulary_size, scores):
    """The package's README.md (Hugging Face model card, with its YAML header)."""
    data = metadata.get("training_data") or {}
    dataset = data.get("dataset", "unknown")
    spec = metadata["input_spec"]
    splits = ", ".join(f"{s} {v.get('videos')} videos" for s, v in
                       sorted((data.get("splits") or {}).items())) or "not recorded"
    model = model_config.to_dict()
    return f"""---
library_name: keras
tags:
- video-captioning
- etenet_tf
- tensorflow
---

# EtENet video captioner ({dataset}, {metadata['stage']})

An end-to-end video captioning model (EtENet: Olivastri, Singh, Cuzzolin, "End-to-End Video
Captioning", arXiv 1904.02628) trained with etenet_tf {metadata['etenet_tf_version']}: a per-frame
`{model.get('encoder')}` encoder feeds {describe_decoder(model)} that writes one
English sentence per video.

## Use

```
pip install -e ".[hub]"    # in an etenet_tf checkout; [demo] adds the browser page
etenet caption --model=PATH_OR_hf://OWNER/NAME --videos=clip.mp4
etenet demo --model=PATH_OR_hf://OWNER/NAME
```

## Training data

- dataset: {dataset} ({splits})
- input: {spec['num_frames']} frames per video, sampled uniformly, resized to
  {spec['image_size']}x{spec['image_size']}
- vocabulary: {vocabulary_size} words (`vocab.txt`)
- CIDEr-D document frequencies of the training references:
  {'`' + FREQUENCIES + '`' if metadata.get('cider_df') else 'not included'}
- the weights are the best `{metadata['stage']}` checkpoint by validation
  ({(metadata.get('best') or {}).get('metric')} = {(metadata.get('best') or {}).get('value')})

## Scores

{scores_table(scores)}

## Intended use

Trying the model on short clips like its training videos, research on video captioning, and a
starting point for `--stage=finetune --model=...` on your own data.

## Limits

- It only knows the {vocabulary_size} words and the kinds of scenes of {dataset}: videos unlike
  its training data get fluent but wrong captions.
- It sees {spec['num_frames']} frames of the whole video, so long videos with several events get
  one caption about part of them. No audio.
- Captions inherit the biases of the training captions; do not use them for decisions about
  people.

## Files

`model_config.json`, `vocab.txt`, `input_spec.json`, `{metadata['stage']}/best/` (weights),
`flags.json` (the export run's flags), `scores.json`, `metadata.json`.
"""


# -- reading ---------------------------------------------------------------


def _download(model):
    """The local snapshot of `hf://owner/name`."""
    repo_id = model[len(HF_PREFIX):].strip("/")
    if not _REPO_ID.fullmatch(repo_id):
        raise ModelPackageError(f"--model={model}: expected hf://owner/name")
    try:
        import huggingface_hub
        from huggingface_hub import constants
        from huggingface_hub import errors as hub_errors
    except ImportError:
        raise ModelPackageError(f"--model={model} needs huggingface_hub: pip install -e "
                                '".[hub]"') from None
    try:
        return huggingface_hub.snapshot_download(repo_id=repo_id, library_name="etenet_tf",
                                                 library_version=__version__)
    except (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled) as e:
        cache = constants.HF_HUB_CACHE
        why = "the hub is offline (HF_HUB_OFFLINE)" if constants.HF_HUB_OFFLINE \
            else f"the hub could not be reached ({_first_line(e)})"
        raise MissingInputError(
            f"--model={model}: {why} and {repo_id} is not in the Hugging Face cache "
            f"{cache}; on a machine online run `hf download {repo_id} --local-dir DIR`, "
            f"copy DIR here and pass --model=DIR (or copy that machine's {cache} here)"
        ) from None
    except (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError):
        raise ModelPackageError(f"--model={model}: no such model on the Hugging Face Hub "
                                "(or it is private: log in with `hf auth login`)") from None
    except hub_errors.HfHubHTTPError as e:
        raise MissingInputError(f"--model={model}: download failed ({_first_line(e)}); "
                                "re-run to retry") from None


def _first_line(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]


def read_metadata(path):
    """The package's `metadata.json`.

    Raises:
        ModelPackageError: `path` is not a package of a version this reads.
    """
    meta_path = os.path.join(path, METADATA)
    if not os.path.isdir(path):
        raise ModelPackageError(f"--model={path}: no such directory (give a model package "
                                "that --stage=export wrote, or hf://owner/name)")
    try:
        with open(meta_path, encoding="utf-8") as f:
            metadata = json.load(f)
    except FileNotFoundError:
        hint = " (it is a model directory: pass it as --model_dir)" if os.path.isfile(
            os.path.join(path, RunDir.MODEL_CONFIG)) else ""
        raise ModelPackageError(f"--model={path} is not a model package: no {METADATA}"
                                f"{hint}") from None
    except (OSError, ValueError) as e:
        raise ModelPackageError(f"--model={path}: {METADATA} is unreadable ({e})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelPackageError(f"--model={path}: {METADATA} is not an etenet_tf model package's")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise ModelPackageError(
            f"--model={path} was written by a newer etenet_tf (package format "
            f"{metadata['format_version']}; this one reads {FORMAT_VERSION}): upgrade etenet_tf")
    return metadata


def resolve(model):
    """The local directory of `--model` (a path, or `hf://owner/name`
    downloaded first), checked to be a package."""
    path = _download(model) if model.startswith(HF_PREFIX) else model
    read_metadata(path)
    return path


def model_directory(config):
    """The directory a stage loads its model from: `--model` resolved, or
    `--model_dir`. A package is a model directory (see the module doc)."""
    return resolve(config.source.model) if config.source.model else config.model_dir


def seed_model_dir(package, model_dir):
    """Starts `model_dir` from a package, for `finetune --model=...`: the
    package's model, vocabulary and input spec, and its weights as the
    best pretrain checkpoint (finetune starts from that). A model directory
    already seeded from the same package is left as it is (a re-run
    resumes).

    Raises:
        UsageError: `model_dir` already holds another trained model.
    """
    metadata = read_metadata(package)
    source = RunDir(package)
    target = RunDir(model_dir)
    best = target.read_best("pretrain")
    if best is not None:
        if best.get("from_model") == os.path.abspath(package):
            return target
        raise UsageError(f"--model_dir={model_dir} already holds a pretrain checkpoint; "
                         f"finetune --model={package} needs a new --model_dir")
    target.check_compatible(source.read_model_config(), source.read_vocabulary())
    os.makedirs(model_dir, exist_ok=True)
    for name in (RunDir.MODEL_CONFIG, RunDir.VOCABULARY, RunDir.INPUT_SPEC):
        if not os.path.isfile(os.path.join(model_dir, name)):
            files.write_bytes(os.path.join(model_dir, name), files.read_bytes(
                os.path.join(package, name)))
    stage = metadata["stage"]
    record = dict(source.read_best(stage) or {}, from_model=os.path.abspath(package),
                  from_stage=stage)
    os.makedirs(target.stage_dir("pretrain"), exist_ok=True)
    with files.atomic_path(target.best_dir("pretrain")) as tmp:
        shutil.copytree(source.best_dir(stage), tmp)
        write_json(os.path.join(tmp, "best.json"), record)
    return target

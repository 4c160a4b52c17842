"""`--stage=prepare`: the data source's videos -> sharded TFRecords, decoded
here in a process pool (`--runner=local`) or by an Apache Beam pipeline
(`--runner=beam`, `etenet_tf.beam.prepare`): the same files either way."""

import os
import time

from etenet_tf import files
from etenet_tf.data import prepare as prepare_lib
from etenet_tf.data.sources import load_examples
from etenet_tf.progress import Progress
from etenet_tf.text import tokenizer, vocabulary


def run(config):
    """Prepares `config.data`; returns the report (also `prepare_report.json`)."""
    data = config.data
    data.validate(preparing=True)
    config.model_for_data.validate()  # frames the encoder cannot take are refused now
    config.beam.validate()
    beam_options = None
    if config.beam.runner == "beam":  # Beam installed and its options valid, before any work
        from etenet_tf.beam import prepare as beam_prepare
        beam_options = beam_prepare.check(config)
    if files.is_remote(data.records_dir):
        files.makedirs(data.records_dir)
    else:
        files.ensure_directory(data.records_dir, "records_dir")
    examples = load_examples(data)
    start = time.time()
    bar = []  # made on the first call, when the number of videos is known

    def progress(done, total):
        if not bar:
            bar.append(Progress("prepare", total, done=done, show=config.progress))
        else:
            bar[0].advance(done - bar[0].done)

    def build_vocabulary(captions):
        return vocabulary.Vocabulary.build(tokenizer.words_of(captions), data.min_word_count)

    try:
        if beam_options is not None:
            report = beam_prepare.prepare(examples, config, beam_options, build_vocabulary)
        else:
            report = prepare_lib.prepare(
                examples, data.records_dir, data.frames, data.image_size,
                dataset_name=data.dataset, vocabulary_builder=build_vocabulary,
                videos_per_shard=data.videos_per_shard, workers=data.workers or None,
                strict=data.strict, max_pixels=data.max_frame_pixels,
                decode_timeout_s=data.decode_timeout_s, progress=progress,
            )
    except BaseException:
        if bar:
            bar[0].abandon()  # end the progress line before the error line
        raise
    if bar:
        bar[0].finish()
    written = ", ".join(f"{k} {v}" for k, v in report["written"].items()) or "none"
    print(f"prepare: wrote {written} videos to {data.records_dir} in {time.time() - start:.1f}s;"
          f" skipped {len(report['missing'])} missing, {len(report['undecodable'])} undecodable, "
          f"{len(report['unsafe_id'])} unsafe ids, {len(report['no_captions'])} without "
          f"captions (details: {os.path.join(data.records_dir, prepare_lib.REPORT_FILE)}); "
          f"vocabulary {report['vocabulary_size']} tokens")
    return report

"""EtENet video captioning: `python main.py --stage=STAGE` (stages: README, or --help)."""

if __name__ == "__main__":
    # Imported here, not above: the decoding workers (spawned) run this file
    # again as `__mp_main__`, and must not import TensorFlow with it.
    from etenet_tf.cli.main import run

    run()

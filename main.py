"""EtENet video captioning: `python main.py --stage=STAGE` (stages: README, or --help)."""

from etenet_tf.cli.main import run

if __name__ == "__main__":
    run()

"""EtENet video captioning: `python main.py --stage=prepare|pretrain|finetune|evaluate|caption|export|all`."""

from etenet_tf.cli.main import run

if __name__ == "__main__":
    run()

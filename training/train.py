"""Train EGNet: ``python training/train.py --config config/train_nightcity.yaml [--set optim.lr=0.01] [--resume]``.

The same code path as ``egnet train``; for several GPUs or machines, run it under ``torchrun``.
"""

import sys

from egnet_core.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

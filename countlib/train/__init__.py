"""Training: one loop for every family, run records, checkpoints."""

from countlib.train.trainer import Trainer, TrainResult, train

__all__ = ["TrainResult", "Trainer", "train"]

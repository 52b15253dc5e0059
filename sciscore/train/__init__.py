"""Training: losses, EMA, the trainer and the training configuration (the checkpoint format is
`sciscore.checkpoint`'s)."""

from sciscore.checkpoint import check_compatible, load_checkpoint
from sciscore.train.config import (DataConfig, OptimizerConfig, TrainConfig, TrainingConfig, config_from_dict,
                                   merge, read_toml)
from sciscore.train.ema import ExponentialMovingAverage
from sciscore.train.losses import (LossConfig, SigmaBinnedLoss, denoising_loss, draw_times, isotropy_penalty,
                                   loss_weight, split_residual_loss)
from sciscore.train.posthoc_ema import PowerProfile, TrainerProfile, posthoc_ema, write_posthoc_checkpoint
from sciscore.train.trainer import TrainResult, train, validation_loss

__all__ = [
    "check_compatible", "load_checkpoint",
    "DataConfig", "OptimizerConfig", "TrainConfig", "TrainingConfig", "config_from_dict", "merge", "read_toml",
    "ExponentialMovingAverage",
    "LossConfig", "SigmaBinnedLoss", "denoising_loss", "draw_times", "isotropy_penalty", "loss_weight",
    "split_residual_loss",
    "PowerProfile", "TrainerProfile", "posthoc_ema", "write_posthoc_checkpoint",
    "TrainResult", "train", "validation_loss",
]

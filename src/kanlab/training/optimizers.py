"""The optimizer and learning-rate schedule a TrainConfig names (one stage's worth)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim import lr_scheduler

from kanlab.training.config import TrainConfig
from kanlab.training.lbfgs import LBFGS


def make_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer cfg names, over params (LBFGS: training.lbfgs's, with a strong-Wolfe line search)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return LBFGS(params, lr=cfg.lr, max_iter=cfg.lbfgs_max_iter, history_size=cfg.lbfgs_history,
                 tolerance_grad=cfg.lbfgs_tolerance_grad, tolerance_change=cfg.lbfgs_tolerance_change)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> lr_scheduler.LRScheduler | None:
    """The learning-rate schedule of one stage (cosine decays to 0 over cfg.steps); None if constant."""
    if cfg.schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.steps))
    if cfg.schedule == "step":
        return lr_scheduler.StepLR(opt, step_size=cfg.step_every, gamma=cfg.gamma)
    return None

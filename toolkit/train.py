"""Seeded training and evaluation loops shared by every stage that touches torch weights."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def train(
    module: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    seed: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    after_step: Callable[[], None] | None = None,
    teacher: nn.Module | None = None,
    distill_alpha: float = 0.7,
    temperature: float = 4.0,
) -> nn.Module:
    """Adam + cross-entropy; with a `teacher`, knowledge distillation (Hinton et al. 2015):
    alpha * T^2 * KL(student_T || teacher_T) + (1 - alpha) * CE. `after_step` runs after every
    optimizer step. Parameters with requires_grad=False stay frozen."""
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    params = [p for p in module.parameters() if p.requires_grad]
    if epochs <= 0 or not params:
        return module.eval()
    opt = torch.optim.Adam(params, lr=lr)
    # cosine decay to zero over the run: settles fine-tuning instead of ending on a noisy step
    steps = epochs * math.ceil(len(xt) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    ce = nn.CrossEntropyLoss()
    if teacher is not None:
        teacher.eval()
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad()
            logits = module(xt[idx])
            loss = ce(logits, yt[idx])
            if teacher is not None:
                with torch.no_grad():
                    soft = torch.softmax(teacher(xt[idx]) / temperature, dim=1)
                kd = nn.functional.kl_div(torch.log_softmax(logits / temperature, dim=1), soft, reduction="batchmean")
                loss = distill_alpha * temperature**2 * kd + (1 - distill_alpha) * loss
            loss.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step()
    return module.eval()


@torch.no_grad()
def predict(module: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    module.eval()
    outs = [module(torch.from_numpy(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(outs)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def evaluate(module: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return accuracy(predict(module, x), y)

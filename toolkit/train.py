"""Seeded training and evaluation loops shared by every stage that touches torch weights."""
from __future__ import annotations

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
) -> nn.Module:
    """Adam + cross-entropy; `after_step` runs after every optimizer step (e.g. re-apply masks)."""
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad()
            loss_fn(module(xt[idx]), yt[idx]).backward()
            opt.step()
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

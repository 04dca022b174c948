"""Optimisation: the loss and the one-cycle AdamW loop that trains networks on patches."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from screen.model.network import UNet3D
from screen.training.patches import TrainingSet, batch_of
from screen.training.recipe import BATCH, CLASS_WEIGHTS

logger = logging.getLogger(__name__)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(logits, target, weight=torch.tensor(CLASS_WEIGHTS, device=logits.device))
    prob = torch.softmax(logits, dim=1)
    dice = []
    for p, t in ((prob[:, 1] + prob[:, 2], (target > 0).float()), (prob[:, 2], (target == 2).float())):
        inter = (p * t).sum()
        dice.append(1.0 - (2 * inter + 1.0) / (p.sum() + t.sum() + 1.0))
    return ce + 0.5 * sum(dice)


def optimise(nets: Sequence[UNet3D], data: TrainingSet, patch: tuple[int, int, int], steps: int,
           rng: np.random.Generator, label: str, lesion_bias: float, max_lr: float = 3e-3,
           batch: int = BATCH) -> None:
    """Train each of ``nets`` for ``steps`` one-cycle steps, all on the same batches."""
    device = next(nets[0].parameters()).device
    noise = torch.Generator(device=device)
    noise.manual_seed(int(rng.integers(2**62)))
    optimisers = [torch.optim.AdamW(net.parameters(), lr=max_lr, weight_decay=1e-4) for net in nets]
    schedules = [torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=0.1)
                 for opt in optimisers]
    for net in nets:
        net.train()
    # Summed on the device and read every 50 steps: reading a loss waits for the GPU.
    running = torch.zeros(len(nets), device=device)
    started = time.monotonic()
    for step in range(steps):
        data.arrive(step)
        xb, yb = batch_of([data.draw(patch, lesion_bias, rng) for _ in range(batch)], rng, noise, device)
        for i, (net, opt, schedule) in enumerate(zip(nets, optimisers, schedules)):
            loss = segmentation_loss(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            running[i] += loss.detach()
        if (step + 1) % 50 == 0:
            losses = ", ".join(f"{v / 50:.4f}" for v in running.tolist())
            logger.info("%s step %d/%d on %d phantoms, loss %s (%.0f s)", label, step + 1, steps,
                        len(data.items), losses, time.monotonic() - started)
            running.zero_()
    for net in nets:
        net.eval()

"""The detector's network: a small 3-D U-Net that labels every voxel background, pancreas
or lesion.

The same architecture serves both stages (coarse localisation on the whole body, then a
finer look at a crop around the pancreas), with different widths. It is built only from
operators that ONNX Runtime, TensorRT and INT8 Q/DQ quantization all handle: Conv3d (with
BatchNorm that folds into it on export), ReLU, MaxPool3d, ConvTranspose3d, Concat and
Softmax. It is fully convolutional, so any input whose spatial sizes are multiples of
``shape_multiple`` runs, which is what lets the exported model keep dynamic spatial axes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("background", "pancreas", "lesion")


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv3d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)]


def _block(c_in: int, c_out: int, double: bool = True) -> nn.Sequential:
    # The full-resolution level gets one convolution rather than two: it holds most of the
    # voxels, so this halves the cost of the network for little loss of capacity.
    return nn.Sequential(*_conv(c_in, c_out), *(_conv(c_out, c_out) if double else []))


class UNet3D(nn.Module):
    """U-Net with ``len(widths) - 1`` halvings; ``forward`` returns logits (N, C, K, J, I)."""

    def __init__(self, widths: Sequence[int] = (8, 16, 32, 64), n_classes: int = len(CLASSES)):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise ValueError(f"widths needs at least two positive channel counts, got {widths}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.widths = widths
        self.n_classes = n_classes
        self.down = nn.ModuleList()
        c_in = 1
        for level, w in enumerate(widths):
            self.down.append(_block(c_in, w, double=level > 0))
            c_in = w
        self.pool = nn.MaxPool3d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_low, w_high in zip(widths[::-1][:-1], widths[::-1][1:]):
            self.up.append(nn.ConvTranspose3d(w_low, w_high, 2, stride=2))
            self.merge.append(_block(2 * w_high, w_high, double=w_high != widths[0]))
        self.head = nn.Conv3d(widths[0], n_classes, 1)

    @property
    def shape_multiple(self) -> int:
        """Spatial sizes must be divisible by this for the skips to line up."""
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


class WithSoftmax(nn.Module):
    """What is exported: class probabilities rather than logits, so every runtime agrees."""

    def __init__(self, net: UNet3D):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def build(widths: Sequence[int], n_classes: int = len(CLASSES)) -> UNet3D:
    return UNet3D(widths, n_classes)

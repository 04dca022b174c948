"""What a caller keeps of a network's outputs, reduced where the network runs.

A network gives (N, C, K, J, I) floats. Its callers seldom need them all: the bundled
detector's locator needs one mask, its segmenter a mask and the lesion channel. Asked through
:func:`run_keeping`, a runner hands back only what was asked for, in the order asked. A local
runner reduces its own outputs; an inference service reduces them on its side, so that only
the reductions cross the network (masks as bits), and the caller gets the same arrays as from
a local runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from screen.backends.base import Runner


def _check_channels(channels: object) -> None:
    if not isinstance(channels, tuple) or not channels or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in channels):
        raise ValueError(f"channels must be a non-empty tuple of channel indices, got {channels!r}")


@dataclass(frozen=True, slots=True)
class Channels:
    """Some output channels as they are: (N, len(channels), K, J, I) floats."""

    channels: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_channels(self.channels)

    def of(self, out: np.ndarray) -> np.ndarray:
        return out[:, list(self.channels)]


@dataclass(frozen=True, slots=True)
class Above:
    """Where some channels, added in the order given, exceed ``threshold``: (N, K, J, I) bool."""

    channels: tuple[int, ...]
    threshold: float

    def __post_init__(self) -> None:
        _check_channels(self.channels)
        if not isinstance(self.threshold, float):
            raise TypeError(f"threshold must be a float, got {self.threshold!r}")

    def of(self, out: np.ndarray) -> np.ndarray:
        total = out[:, self.channels[0]].copy()
        for c in self.channels[1:]:
            total += out[:, c]
        return total > self.threshold


@dataclass(frozen=True, slots=True)
class Winning:
    """Where ``channel`` is the largest output, the first of equal ones winning as argmax
    has it: (N, K, J, I) bool."""

    channel: int

    def __post_init__(self) -> None:
        _check_channels(self.channels)

    @property
    def channels(self) -> tuple[int, ...]:
        return (self.channel,)

    def of(self, out: np.ndarray) -> np.ndarray:
        return np.argmax(out, axis=1) == self.channel


Kept = Channels | Above | Winning


def keep(out: np.ndarray, kept: Sequence[Kept]) -> tuple[np.ndarray, ...]:
    """What ``kept`` asks for of the outputs ``out`` (N, C, K, J, I)."""
    channels = out.shape[1]
    for k in kept:
        if not isinstance(k, Kept):
            raise TypeError(f"what to keep of a network's outputs must be Channels, Above or "
                            f"Winning, got {type(k).__name__}")
        if max(k.channels) >= channels:
            raise ValueError(f"{k} asks for channel {max(k.channels)}; the network has {channels}")
    return tuple(k.of(out) for k in kept)


@runtime_checkable
class KeepingRunner(Protocol):
    """A runner that reduces its outputs itself, where they are made."""

    def run_keeping(self, x: np.ndarray, kept: Sequence[Kept]) -> tuple[np.ndarray, ...]: ...


def run_keeping(runner: Runner, x: np.ndarray, kept: Sequence[Kept]) -> tuple[np.ndarray, ...]:
    """The network's outputs for ``x``, reduced to what ``kept`` asks for."""
    if isinstance(runner, KeepingRunner):
        return runner.run_keeping(x, tuple(kept))
    return keep(runner.run(x), kept)


@dataclass(frozen=True, slots=True, eq=False)
class PackedMask:
    """A bool array as bits, eight voxels a byte, for the network between processes."""

    shape: tuple[int, ...]
    bits: np.ndarray

    @classmethod
    def of(cls, mask: np.ndarray) -> PackedMask:
        return cls(mask.shape, np.packbits(mask, axis=None))

    @property
    def nbytes(self) -> int:
        return self.bits.nbytes

    def unpack(self) -> np.ndarray:
        count = int(np.prod(self.shape))
        return np.unpackbits(self.bits, count=count).view(bool).reshape(self.shape)

"""Turn a volume's axes towards patient left, posterior and superior, without resampling.

The acquisition's axes (i along the rows, j down the columns, k along the slice normal) are
permuted and flipped so that i, j and k run as near as possible to +x (L), +y (P) and +z (S).
Only whole-axis permutations and flips are used, so voxel values are untouched; whatever
obliquity remains stays in the affine.

The loader allocates the canonical array once and writes each acquisition slice through
``acquisition_view``, a numpy view of that array in acquisition order, so turning costs no
copy and no extra memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

from screen import geometry


@dataclass(frozen=True, slots=True)
class Turn:
    """Acquisition axis a (0 = i, 1 = j, 2 = k) becomes patient axis ``axis[a]``,
    reversed where ``flip[a]``."""

    axis: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    def __post_init__(self) -> None:
        if sorted(self.axis) != [0, 1, 2]:
            raise ValueError(f"axis must be a permutation of (0, 1, 2), got {self.axis}")


def canonical_turn(affine: np.ndarray) -> Turn:
    """The permutation and flips that bring the affine's axes nearest to L, P, S."""
    directions = geometry.unit_axes(affine)
    best = max(
        permutations(range(3)),
        # Most alignment wins; ties (exactly 45 degrees) go to the unpermuted order.
        key=lambda p: (round(sum(abs(directions[p[a], a]) for a in range(3)), 9),
                       p == (0, 1, 2)),
    )
    flip = tuple(bool(directions[best[a], a] < 0) for a in range(3))
    return Turn(axis=tuple(best), flip=flip)  # type: ignore[arg-type]


def turned_shape(shape_kji: tuple[int, int, int], turn: Turn) -> tuple[int, int, int]:
    """Shape (k, j, i) of the turned array, given the acquisition's shape (k, j, i)."""
    sizes = {turn.axis[a]: shape_kji[2 - a] for a in range(3)}
    return sizes[2], sizes[1], sizes[0]


def turned_affine(affine: np.ndarray, shape_kji: tuple[int, int, int], turn: Turn) -> np.ndarray:
    out = np.eye(4)
    origin = affine[:3, 3].copy()
    for a in range(3):
        column = affine[:3, a]
        if turn.flip[a]:
            origin = origin + (shape_kji[2 - a] - 1) * column
            column = -column
        out[:3, turn.axis[a]] = column
    out[:3, 3] = origin
    return out


def acquisition_view(turned: np.ndarray, turn: Turn) -> np.ndarray:
    """A view of the turned array indexed as the acquisition was: [k, j, i]."""
    # Acquisition axis a (i=0, j=1, k=2) sits at array axis 2 - axis[a] of the turned array.
    view = turned.transpose([2 - turn.axis[2], 2 - turn.axis[1], 2 - turn.axis[0]])
    for array_axis, a in enumerate((2, 1, 0)):
        if turn.flip[a]:
            view = np.flip(view, axis=array_axis)
    return view


def slice_axis(turn: Turn) -> int:
    """The turned array's axis along which the acquisition's slices follow one another."""
    return 2 - turn.axis[2]

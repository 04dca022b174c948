"""Instances kept as columns, so that the index of millions of files fits in little memory.

An Instance record with its strings takes some 900 bytes, and most of it repeats from file to
file of one series: the UIDs of the study and series, the descriptions, the orientation, the
image size. Here each distinct combination of those shared values is kept once, and each file
keeps only what is its own, in typed arrays: its name within its folder, the last part of its
SOP instance UID, its position, its instance number and its size, about 100 bytes. The records
are rebuilt on demand, equal to those that were put in, field for field. (Shared values that
compare equal are kept as the first file gave them: an orientation of -0.0 comes back as the
0.0 of its neighbours, which every computation treats alike.)
"""

from __future__ import annotations

import math
import os
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from typing import overload

from screen.records import Instance

# What is each file's own. Everything else an Instance holds is shared with its neighbours.
_OWN = ("path", "sop_instance_uid", "image_position", "instance_number", "file_size")
_SHARED = tuple(f.name for f in fields(Instance) if f.name not in _OWN)
_INT64 = (-(2**63), 2**63 - 1)


class _SplitText:
    """Strings split at their last ``separator``: the head once in a table (a folder, a UID
    root), the tail as bytes in one buffer. Any string comes back exactly, surrogates too."""

    __slots__ = ("_separator", "_heads", "_head_of", "_head", "_tails", "_ends")

    def __init__(self, separator: str) -> None:
        self._separator = separator
        self._heads: list[str] = []
        self._head_of: dict[str, int] = {}
        self._head = array("I")
        self._tails = bytearray()
        self._ends = array("q")

    def append(self, text: str) -> None:
        cut = text.rfind(self._separator) + 1
        head = text[:cut]
        number = self._head_of.get(head)
        if number is None:
            number = self._head_of[head] = len(self._heads)
            self._heads.append(head)
        self._head.append(number)
        self._tails += text[cut:].encode("utf-8", "surrogatepass")
        self._ends.append(len(self._tails))

    def __getitem__(self, index: int) -> str:
        start = self._ends[index - 1] if index else 0
        tail = self._tails[start:self._ends[index]].decode("utf-8", "surrogatepass")
        return self._heads[self._head[index]] + tail


class InstanceColumns(Sequence[Instance]):
    """Instances appended one by one and read back by their number, in the order appended."""

    __slots__ = ("_paths", "_uids", "_positions", "_numbers", "_sizes", "_shared",
                 "_shared_of", "_which")

    def __init__(self, instances: Iterable[Instance] = ()) -> None:
        self._paths = _SplitText(os.sep)
        self._uids = _SplitText(".")
        self._positions = array("d")  # x, y, z of each file; NaN when it has none
        self._numbers = array("q")
        self._sizes = array("q")
        # Each distinct combination of shared values, with the own values that did not fit
        # their column (an instance number that is None, say), and which one each file has.
        self._shared: list[tuple[object, ...]] = []
        self._shared_of: dict[tuple[object, ...], int] = {}
        self._which = array("I")
        for instance in instances:
            self.append(instance)

    def append(self, instance: Instance) -> None:
        position, number, size = instance.image_position, instance.instance_number, \
            instance.file_size
        unusual: list[tuple[str, object]] = []
        if position is None or not all(type(v) is float for v in position):
            unusual.append(("image_position", position))
            position = (math.nan,) * 3
        if type(number) is not int or not _INT64[0] <= number <= _INT64[1]:
            unusual.append(("instance_number", number))
            number = 0
        if type(size) is not int or not _INT64[0] <= size <= _INT64[1]:
            unusual.append(("file_size", size))
            size = 0
        shared = (*(getattr(instance, name) for name in _SHARED), tuple(unusual))
        which = self._shared_of.get(shared)
        if which is None:
            which = self._shared_of[shared] = len(self._shared)
            self._shared.append(shared)
        self._paths.append(instance.path)
        self._uids.append(instance.sop_instance_uid)
        self._positions.extend(position)
        self._numbers.append(number)
        self._sizes.append(size)
        self._which.append(which)

    def __len__(self) -> int:
        return len(self._which)

    @overload
    def __getitem__(self, index: int) -> Instance: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Instance]: ...

    def __getitem__(self, index: int | slice) -> Instance | Sequence[Instance]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"instance {index} of {len(self)}")
        shared = self._shared[self._which[index]]
        values = dict(zip(_SHARED, shared))
        x, y, z = self._positions[3 * index:3 * index + 3]
        values.update(path=self._paths[index], sop_instance_uid=self._uids[index],
                      image_position=(x, y, z), instance_number=self._numbers[index],
                      file_size=self._sizes[index])
        values.update(shared[-1])  # own values that did not fit their column
        return Instance(**values)

    def kind(self, index: int) -> int:
        """Which combination of shared values instance ``index`` has: instances of one kind
        differ only in their path, SOP instance UID, position, instance number and size."""
        return self._which[index]


class SeriesInstances(Sequence[Instance]):
    """Some of an InstanceColumns' instances, in a series' order: what a Series holds when it
    comes from an index of files. It compares and hashes as the tuple of its instances, and
    travels (pickled to a worker) as columns of its own instances only."""

    __slots__ = ("_columns", "_order")

    def __init__(self, columns: InstanceColumns, order: Sequence[int]) -> None:
        self._columns = columns
        self._order = array("I", order)

    @classmethod
    def of(cls, instances: Sequence[Instance]) -> SeriesInstances:
        """``instances``, in their order, in columns of their own."""
        return cls(InstanceColumns(instances), range(len(instances)))

    def __len__(self) -> int:
        return len(self._order)

    @overload
    def __getitem__(self, index: int) -> Instance: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Instance, ...]: ...

    def __getitem__(self, index: int | slice) -> Instance | tuple[Instance, ...]:
        if isinstance(index, slice):
            return tuple(self._columns[i] for i in self._order[index])
        return self._columns[self._order[index]]

    def __iter__(self) -> Iterator[Instance]:
        columns = self._columns
        return (columns[i] for i in self._order)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SeriesInstances, tuple)):
            return len(self) == len(other) and tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"SeriesInstances({len(self)} instances)"

    def __reduce__(self) -> tuple[object, ...]:
        return (SeriesInstances, (InstanceColumns(self), range(len(self))))

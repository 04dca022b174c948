"""Which GPU a process's ``cuda:N`` is: NVML lists the machine's GPUs, CUDA_VISIBLE_DEVICES
(how a GPU worker is pinned to its GPU) decides which of them CUDA sees, and in what order."""

from __future__ import annotations

import pytest

from screen.gpus import Gpu, cuda_gpus, in_cuda_order

MACHINE = tuple(Gpu(n, f"GPU-{n}a{n}b-0000-{n:04d}", "NVIDIA H200", 139.8, (9, 0))
                for n in range(4))


@pytest.mark.parametrize(("visible", "expected"), [
    ("GPU-2a2b-0000-0002", (2,)),  # a worker pinned by UUID sees its GPU alone, as cuda:0
    ("GPU-3a3b", (3,)),  # a unique prefix
    ("3,1", (3, 1)),  # indices, in the order given
    ("1, GPU-0a0b-0000-0000", (1, 0)),
    ("", ()),  # every GPU hidden
    ("2,GPU-9,0", (2,)),  # CUDA stops at the first entry that names no GPU
    ("GPU-", ()),  # a prefix of every UUID names none in particular
    ("1,1,2", (1,)),  # nor does a GPU named twice
])
def test_cuda_sees_the_gpus_its_visible_devices_name_in_their_order(visible, expected) -> None:
    assert tuple(g.index for g in in_cuda_order(MACHINE, visible)) == expected


def test_without_the_variable_cuda_sees_what_nvml_lists(monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    from screen.gpus import find_gpus

    assert cuda_gpus() == find_gpus()  # here: whatever this machine has, none included

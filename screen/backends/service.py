"""Networks served to many processes from one: the inference service a GPU worker runs, and
the runner CPU workers use in place of a network of their own.

    CPU worker: load → preprocess ─RemoteRunner.run(x)─▶ over the cluster's comm ─▶
    InferenceService on the GPU worker: requests of many series, same network and shape,
        ─one batch─▶ the real runner (torch CUDA, TensorRT; on a CPU stand-in, any backend)
    ─outputs─▶ back to the CPU worker → postprocess → row

Only network inputs and outputs cross, never a volume. A runner's callers (the bundled
detector, nnU-Net's sliding window) cannot tell a :class:`RemoteRunner` from a local one.
A caller that keeps only part of the outputs (:mod:`screen.backends.outputs`: a mask, one
channel) gets only that part back: the service reduces each request's outputs, and sends
masks as bits.

The service is a Dask actor. Requests wait on its event loop; a batch starts whenever a slot
is free (``ServiceSpec.gpu_streams`` CUDA streams on a GPU, ``cpu_concurrency`` threads on a
CPU), taking every waiting request of the oldest network and shape up to the batch size.
Under load requests pile up while the slots are busy, so batches fill by themselves and an
idle service adds no delay.
Only same-shaped inputs can share a batch: nnU-Net's fixed patches batch across series, the
bundled detector's whole-body and box inputs (a size per series, and ONNX networks of batch
1) do not. On a CPU requests never share a batch: it would gain a CPU nothing, and a batch's
outputs differ from each input's alone in the last bits (1.2e-7 with torch), where a CPU
stand-in should give exactly the rows of a sweep without a service.

What crosses to and from a GPU is float16: a network on a GPU computes no finer than that
(in fp16 or int8, autocast casts the input at the first layer; in fp32, cuDNN and TensorRT
multiply in TF32 by default, whose 11 significant bits are fp16's), so fp16 inputs cost
nothing, and fp16 outputs move probabilities by at most 2.4e-4 (half a step of fp16 below 1;
logits by a relative 4.9e-4, as nnU-Net's own float16 sums do), inside the tolerance the GPU
already has. A CPU stand-in sends float32 and thus gives bit for bit the rows of a sweep
without a service. ``ServiceSpec.transit`` (``scan --gpu-transit``) overrides either.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from screen.backends.base import PRECISIONS, check_input
from screen.backends.outputs import Kept, PackedMask, keep

if TYPE_CHECKING:
    from screen.backends.base import Runner
    from screen.backends.torch import CudaOptions

logger = logging.getLogger(__name__)

TRANSITS = ("auto", "float32", "float16")
MAX_GPU_BATCH = 64
# What a 3-D U-Net holds per input voxel while it runs, activations of every stage in fp16:
# about 1 KiB at nnU-Net's widths (a 128³ patch takes about 2 GiB). An estimate to size
# batches from a GPU's free memory, leaving half of it free; ServiceSpec.max_batch overrides.
ACTIVATION_BYTES_PER_VOXEL = 1024
GPU_MEMORY_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How one inference service runs its networks."""

    backend: str = "auto"
    precision: str = "fp32"
    cpu_threads: int | None = None  # per batch on a CPU; None: the library's default
    cpu_concurrency: int = 1  # batches at once on a CPU: as many as the CPU workers it serves
    gpu_streams: int = 2  # batches at once on a GPU, each on its own CUDA stream
    max_batch: int | None = None  # samples per batch on a GPU; None: from its free memory
    transit: str = "auto"  # what crosses the network: see the module's doc
    cuda: CudaOptions | None = None  # torch on CUDA: autocast, layout, compilation

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {self.precision!r}")
        if self.transit not in TRANSITS:
            raise ValueError(f"transit must be one of {', '.join(TRANSITS)}, got {self.transit!r}")
        for name in ("cpu_concurrency", "gpu_streams"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")


@dataclass(frozen=True, slots=True)
class ServedNetwork:
    """What a service runs a network with, as its callers' rows should say."""

    backend: str
    precision: str
    device: str
    transit: str  # float32 or float16


@dataclass(frozen=True, slots=True)
class ServiceStats:
    """What a service did: requests (one per network call of a series), batches, bytes that
    crossed the network each way, and seconds its slots spent running batches."""

    worker: str
    device: str
    requests: int = 0
    batches: int = 0
    samples: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    busy_seconds: float = 0.0
    largest_batch: int = 0


@dataclass(slots=True, eq=False)
class _Request:
    x: np.ndarray
    kept: tuple[Kept, ...] | None  # None: the outputs whole
    done: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


def transit_dtype(transit: str, device: str) -> np.dtype:
    if transit == "auto":
        return np.dtype(np.float16 if device.startswith("cuda") else np.float32)
    return np.dtype(transit)


def batch_size(spec: ServiceSpec, runner: Runner, sample_voxels: int) -> int:
    """Samples per batch for inputs of ``sample_voxels`` voxels each; 0 on a CPU, where each
    request runs as it came."""
    if not runner.device.startswith("cuda"):
        return 0
    most = getattr(runner, "max_batch", None) or MAX_GPU_BATCH  # ONNX networks may fix it
    if spec.max_batch is not None:
        return min(most, spec.max_batch)
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(runner.device))
    fits = int(free * GPU_MEMORY_SHARE) // max(1, sample_voxels * ACTIVATION_BYTES_PER_VOXEL)
    return max(1, min(most, fits))


class InferenceService:
    """The networks of one GPU (or a CPU standing in for one), for every series of a sweep.

    Runners are loaded at a network's first request and kept. Methods are coroutines, so the
    worker's event loop takes every request at once; batches run in the service's threads.
    """

    def __init__(self, spec: ServiceSpec) -> None:
        from screen.backends import set_cpu_threads

        if not isinstance(spec, ServiceSpec):
            raise TypeError(f"an inference service needs a ServiceSpec, got {type(spec).__name__}")
        self.spec = spec
        set_cpu_threads(spec.cpu_threads)
        if spec.cuda is not None:
            from screen.backends.torch import set_cuda_options

            set_cuda_options(spec.cuda)
        self._threads = ThreadPoolExecutor(max(spec.cpu_concurrency, spec.gpu_streams),
                                           thread_name_prefix="screen-inference")
        self._load_lock = threading.Lock()
        self._packages: dict[str, object] = {}
        self._runners: dict[tuple[str, str], Runner] = {}
        self._queues: dict[tuple, deque[_Request]] = {}
        # Per queue, sized at its first batch: later, torch's cache holds memory it frees.
        self._limits: dict[tuple, int] = {}
        self._slots: int | None = None  # known once the first runner says on which device
        self._busy = 0
        self._stats: dict[str, float] = dict.fromkeys(
            ("requests", "batches", "samples", "bytes_in", "bytes_out", "busy_seconds",
             "largest_batch"), 0)
        self._device = ""

    async def describe(self, package: str, network: str) -> ServedNetwork:
        """Load ``network`` of the package at ``package`` (once) and say how it runs."""
        runner = await asyncio.get_running_loop().run_in_executor(
            self._threads, self._runner, package, network)
        return self._served(runner)

    async def run(self, package: str, network: str, x: np.ndarray,
                  kept: tuple[Kept, ...] | None = None) -> Transit | tuple[Transit, ...]:
        """The network's outputs for ``x`` (N, 1, K, J, I) in the transit dtype; with
        ``kept``, only what it asks for, masks packed into bits."""
        if not isinstance(x, np.ndarray) or x.ndim != 5:
            raise ValueError(f"network input must be an array of shape (N, 1, K, J, I), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        if (package, network) not in self._runners:
            await self.describe(package, network)
        request = _Request(x, kept, asyncio.get_running_loop().create_future())
        self._queues.setdefault((package, network, x.shape[1:], x.dtype.str), deque()).append(
            request)
        self._stats["requests"] += 1
        self._stats["bytes_in"] += x.nbytes
        self._dispatch()
        out = await request.done
        self._stats["bytes_out"] += sum(o.nbytes for o in out) if kept is not None else out.nbytes
        return out

    async def stats(self) -> ServiceStats:
        from distributed import get_worker

        try:
            worker = str(get_worker().name)
        except ValueError:  # a service used in this process, outside Dask
            worker = ""
        s = self._stats
        return ServiceStats(worker, self._device, int(s["requests"]),
                            int(s["batches"]), int(s["samples"]), int(s["bytes_in"]),
                            int(s["bytes_out"]), round(s["busy_seconds"], 3),
                            int(s["largest_batch"]))

    def _runner(self, package: str, network: str) -> Runner:
        from screen.backends import load_runner
        from screen.model.package import ModelPackage

        with self._load_lock:
            runner = self._runners.get((package, network))
            if runner is None:
                if package not in self._packages:
                    self._packages[package] = ModelPackage.load(Path(package))
                runner = load_runner(self._packages[package], network, self.spec.backend,
                                     self.spec.precision, local=True)
                self._runners[(package, network)] = runner
                if self._slots is None:
                    self._device = runner.device
                    self._slots = self._slots_on(runner.device)
            return runner

    def _slots_on(self, device: str) -> int:
        if not device.startswith("cuda"):
            return self.spec.cpu_concurrency
        # torch.compile's CUDA graphs run one batch at a time: their replay from several
        # threads at once is untried.
        compiled = self.spec.cuda is not None and self.spec.cuda.compile
        return 1 if compiled else self.spec.gpu_streams

    def _served(self, runner: Runner) -> ServedNetwork:
        dtype = transit_dtype(self.spec.transit, runner.device)
        return ServedNetwork(runner.name, runner.precision, runner.device, dtype.name)

    def _dispatch(self) -> None:
        """Start batches while slots are free, oldest waiting request first (event loop)."""
        loop = asyncio.get_running_loop()
        while self._busy < (self._slots or 1):
            waiting = [(q[0].arrived, key) for key, q in self._queues.items() if q]
            if not waiting:
                return
            _, key = min(waiting)
            queue = self._queues[key]
            runner = self._runners[key[:2]]
            limit = self._limits.get(key)
            if limit is None:
                limit = self._limits[key] = batch_size(self.spec, runner,
                                                       int(np.prod(key[2][1:])))
            batch = [queue.popleft()]
            while queue and sum(r.x.shape[0] for r in batch) + queue[0].x.shape[0] <= limit:
                batch.append(queue.popleft())
            self._busy += 1
            work = loop.run_in_executor(self._threads, self._run_batch, runner, batch)
            work.add_done_callback(lambda done, batch=batch: self._finished(done, batch))

    def _run_batch(self, runner: Runner, batch: Sequence[_Request]) -> tuple[list, float]:
        """Each request's outputs, as they cross back, and the seconds it took."""
        start = time.perf_counter()
        x = batch[0].x if len(batch) == 1 else np.concatenate([r.x for r in batch])
        out = runner.run(x)
        dtype = self._served(runner).transit
        outputs, first = [], 0
        for request in batch:
            mine = out[first:first + request.x.shape[0]]
            first += request.x.shape[0]
            if request.kept is None:
                outputs.append(mine.astype(dtype, copy=False))
            else:
                outputs.append(tuple(_transit(k, dtype) for k in keep(mine, request.kept)))
        return outputs, time.perf_counter() - start

    def _finished(self, done: asyncio.Future, batch: list[_Request]) -> None:
        self._busy -= 1
        error = done.exception()
        if error is None:
            outputs, seconds = done.result()
            self._stats["busy_seconds"] += seconds
            self._stats["batches"] += 1
            samples = sum(r.x.shape[0] for r in batch)
            self._stats["samples"] += samples
            self._stats["largest_batch"] = max(self._stats["largest_batch"], samples)
            for request, out in zip(batch, outputs):
                if not request.done.done():  # a caller gone does not stop the others
                    request.done.set_result(out)
        else:
            for request in batch:
                if not request.done.done():
                    request.done.set_exception(error)
        self._dispatch()


Transit = np.ndarray | PackedMask  # what crosses back: floats in the transit dtype, or bits


def _transit(kept: np.ndarray, dtype: np.dtype) -> Transit:
    return PackedMask.of(kept) if kept.dtype == np.bool_ else kept.astype(dtype, copy=False)


def _arrived(kept: Transit) -> np.ndarray:
    return kept.unpack() if isinstance(kept, PackedMask) else np.asarray(kept, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class ServiceHandle:
    """Where an inference service lives: its worker's address and its actor's key."""

    address: str
    key: str

    def call(self, method: str, *args: object) -> object:
        """``method(*args)`` on the service, from a task on a worker; blocks until done.

        Straight to the service's worker, as Dask's own actor handles do, but a worker that
        is gone is an error at once: Dask's handle would wait for the actor to come back,
        which a service pinned to a GPU worker that restarted never does.
        """
        from distributed import get_worker
        from distributed.protocol import to_serialize
        from distributed.utils import sync

        worker = get_worker()

        async def ask() -> dict:
            return await worker.rpc(self.address).actor_execute(
                actor=self.key, function=method, args=[to_serialize(a) for a in args],
                kwargs={})

        try:
            reply = sync(worker.loop, ask)
        except OSError as exc:
            raise OSError(f"the inference service on {self.address} cannot be reached (was "
                          f"its worker lost?): {exc}") from exc
        if reply["status"] != "OK":
            raise reply["exception"]
        return reply["result"]


class RemoteRunner:
    """A network run by an inference service: the :class:`screen.backends.base.Runner` a CPU
    worker uses when a GPU worker serves the networks. ``name``, ``precision`` and ``device``
    are the service's, so rows say what really ran."""

    def __init__(self, service: ServiceHandle, package: str, network: str, multiple: int) -> None:
        served = service.call("describe", package, network)
        self._service, self._package, self._network = service, package, network
        self._multiple = multiple
        self._transit = np.dtype(served.transit)
        self.name = served.backend
        self.precision = served.precision
        self.device = served.device

    def run(self, x: np.ndarray) -> np.ndarray:
        return _arrived(self._service.call("run", self._package, self._network, self._input(x)))

    def run_keeping(self, x: np.ndarray, kept: tuple[Kept, ...]) -> tuple[np.ndarray, ...]:
        """Only ``kept`` of the outputs, reduced by the service: see
        :func:`screen.backends.outputs.run_keeping`."""
        out = self._service.call("run", self._package, self._network, self._input(x), kept)
        return tuple(_arrived(o) for o in out)

    def _input(self, x: np.ndarray) -> np.ndarray:
        return check_input(x, self._multiple).astype(self._transit, copy=False)

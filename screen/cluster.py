"""Where a sweep's work runs: a local Dask cluster on 127.0.0.1, or the user's own.

A local cluster speaks TLS with a certificate made for it alone and kept in memory
(``Security.temporary()``): another account on the machine that finds the scheduler's port
cannot connect to it and run code as the sweep's user. A site's own cluster (``--scheduler``)
is reached with the site's certificates, given as a Dask configuration file.

Local clusters have CPU workers (resource ``CPU``) that read, decode, preprocess and
postprocess every series; and one worker per GPU (resource ``GPU``), pinned to its GPU by
UUID through CUDA_VISIBLE_DEVICES, that holds an inference service
(:mod:`screen.backends.service`) and runs nothing but networks. Without GPU workers the CPU
workers run the networks too. Each worker process loads the detector once, through a worker
plugin, and keeps it for every series it screens; with GPU workers its networks are those of a
service, each CPU worker given one (spread evenly when there are several GPUs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dask
from distributed import Client, Nanny, Scheduler, SpecCluster, WorkerPlugin, get_worker
from distributed.security import Security

from screen import pseudonym
from screen.gpus import Gpu

if TYPE_CHECKING:
    from screen.backends.service import ServiceHandle, ServiceStats

logger = logging.getLogger(__name__)

PLUGIN_NAME = "screen-detector"
# Dask settings for the local cluster, as long as it lives.
LOCAL_CLUSTER_CONFIG: dict[str, object] = {
    # A local worker's nanny starts it again whenever it dies. SpecCluster also closes a
    # worker's nanny for good when, this long after the worker left, no worker of that name is
    # back; after a later death that moment can fall inside the restart, and the sweep then
    # waits forever on a cluster with no workers (seen with workers killed for memory;
    # dask/distributed#3088). Longer than any sweep, so only the nanny decides.
    "distributed.deploy.lost-worker-timeout": "30 days",
    # A worker over 80% of its memory limit pauses: it starts nothing new until its memory falls.
    # That helps workers whose results can go to disk; a screen worker's memory is the detector
    # and the series at hand, so one whose limit is close to what the detector takes would wait
    # forever (dask/distributed#5999). It works on instead; the nanny restarts it past 95%.
    "distributed.worker.memory.pause": False,
    # A nanny starts its worker with MALLOC_TRIM_THRESHOLD_=65536, and any such setting stops
    # glibc from raising its mmap threshold: every buffer over 128 KiB then comes as fresh
    # pages from the kernel and goes back when freed, which made reading a series 2.6 times
    # slower than outside Dask. Left unset, workers allocate as any other process does.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """Everything a worker needs to load the same detector as every other worker."""

    model: str
    backend: str
    precision: str
    cpu_threads: int | None = None  # per worker process; None: the libraries' default


class DetectorPlugin(WorkerPlugin):
    """Loads the detector once per worker process, at the first series it screens; on a CPU
    worker of a cluster with inference services, with the networks of one of them."""

    name = PLUGIN_NAME

    def __init__(self, spec: DetectorSpec, services: tuple[ServiceHandle, ...] = ()) -> None:
        self.spec = spec
        self.services = services
        self._detector = None

    def setup(self, worker) -> None:
        from screen.backends import serve_from, set_cpu_threads

        set_cpu_threads(self.spec.cpu_threads)
        if self.services and not worker.state.total_resources.get("GPU"):
            # Spread by name, so that a restarted worker keeps its service.
            index = sum(str(worker.name).encode()) % len(self.services)
            serve_from(self.services[index])
        self._detector = None

    def detector(self):
        if self._detector is None:
            self._detector = open_detector(self.spec)
            logger.info("loaded %s on %s (%s, %s)", self.spec.model, get_worker().address,
                        self._detector.backend, self._detector.precision)
        return self._detector


def open_detector(spec: DetectorSpec):
    """The detector ``spec`` names, opened in this process."""
    from screen.detect.detector import Detector
    from screen.model.package import find_package

    return Detector.open(find_package(spec.model), spec.backend, spec.precision)


def worker_detector():
    """The detector of the worker this task runs on."""
    return get_worker().plugins[PLUGIN_NAME].detector()


def _worker(resources: dict[str, float], memory_limit: int,
            env: dict[str, str] | None = None) -> dict:
    # With a memory limit the nanny restarts its worker when it passes 95% of it (Dask's
    # distributed.worker.memory.terminate); 0 lets a worker take what the machine has.
    options: dict[str, object] = {"nthreads": 1, "resources": resources, "host": "127.0.0.1",
                                  "memory_limit": memory_limit, "silence_logs": logging.WARNING}
    if env:
        options["env"] = env
    return {"cls": Nanny, "options": options}


def cluster_spec(cpu_workers: int, gpus: tuple[Gpu, ...], memory_limit: int = 0
                 ) -> dict[str, dict]:
    """Local workers, each allowed ``memory_limit`` bytes (0: no limit)."""
    workers = {f"cpu-{n}": _worker({"CPU": 1}, memory_limit) for n in range(cpu_workers)}
    for gpu in gpus:
        workers[f"gpu-{gpu.index}"] = _worker({"GPU": 1}, memory_limit,
                                              {"CUDA_VISIBLE_DEVICES": gpu.uuid})
    return workers


def site_security(path: Path) -> Security:
    """The TLS settings of a Dask configuration file (``distributed.comm.tls``: the CA, and
    this client's certificate and key), for a site's cluster; ValueError naming what is
    missing."""
    if not Path(path).is_file():
        raise ValueError(f"--scheduler-security {path} is not a file")
    try:
        config = dask.config.collect(paths=[str(path)], env={})
    except ValueError as exc:
        raise ValueError(f"--scheduler-security {path}: {' '.join(str(exc).split())}") from None
    files = {}
    for key in ("ca-file", "client.cert", "client.key"):
        name = f"distributed.comm.tls.{key}"
        value = dask.config.get(name, default=None, config=config)
        if not value:
            raise ValueError(f"--scheduler-security {path} does not set {name}")
        if not Path(value).is_file():
            raise ValueError(f"--scheduler-security {path}: {name} {value} is not a file")
        files[key] = str(value)
    return Security(require_encryption=True, tls_ca_file=files["ca-file"],
                    tls_client_cert=files["client.cert"], tls_client_key=files["client.key"])


@contextmanager
def connect(*, scheduler: str | None, cpu_workers: int, gpus: tuple[Gpu, ...],
            memory_limit: int = 0, security: Security | None = None) -> Iterator[Client]:
    """A client on the user's scheduler (through ``security`` where its cluster speaks TLS),
    or on a local TLS cluster that lives as long as the block (``memory_limit``: bytes per
    local worker, 0 for none; the user's workers set their own)."""
    if scheduler:
        with Client(scheduler, timeout="30s", security=security) as client:
            yield client
        return
    # Only processes holding this certificate (this client, the scheduler and the workers
    # started here, which inherit it) can connect; it never touches the disk.
    local = Security.temporary()
    workers = cluster_spec(cpu_workers, gpus, memory_limit)
    for worker in workers.values():
        worker["options"]["security"] = local
    # Dask's retries of a task lost with its worker stay: reading headers has no other guard
    # against a worker that dies once. A series that kills its worker every time costs a few
    # more restarts; the sweep then screens it again alone (screen.scan._screen_all).
    scheduler_spec = {"cls": Scheduler, "options": {"host": "127.0.0.1", "protocol": "tls",
                                                   "dashboard_address": "127.0.0.1:0",
                                                   "security": local}}
    with dask.config.set(LOCAL_CLUSTER_CONFIG), \
            SpecCluster(workers=workers, scheduler=scheduler_spec, asynchronous=False,
                        silence_logs=logging.WARNING, security=local) as cluster, \
            Client(cluster, security=local) as client:
        yield client


def has_gpu_workers(client: Client) -> bool:
    info = client.scheduler_info(n_workers=-1)
    return any(w.get("resources", {}).get("GPU") for w in info["workers"].values())


def cpu_resources(client: Client) -> dict[str, float] | None:
    """What a task that reads or decodes pixels must ask for: the ``CPU`` resource where the
    cluster has GPU workers (they run networks only), nothing otherwise. ValueError where
    GPU workers are all a cluster offers."""
    if not has_gpu_workers(client):
        return None
    info = client.scheduler_info(n_workers=-1)
    if not any(w.get("resources", {}).get("CPU") for w in info["workers"].values()):
        raise ValueError("the cluster has GPU workers but no worker with the CPU resource to "
                         "read and prepare series: start those with --resources CPU=1")
    return {"CPU": 1}


@dataclass(frozen=True, slots=True, eq=False)
class InferenceServices:
    """The inference services of a cluster's GPU workers, alive while this object is."""

    handles: tuple[ServiceHandle, ...]
    futures: tuple  # the actors' futures: the client holding them keeps the actors alive

    def stats(self) -> tuple[ServiceStats, ...]:
        return tuple(f.result().stats().result() for f in self.futures)


def start_inference_services(client: Client, spec: DetectorSpec, max_batch: int | None = None,
                             transit: str = "auto") -> InferenceServices:
    """One inference service on each GPU worker of the cluster (none without GPU workers)."""
    from screen.backends.service import InferenceService, ServiceHandle, ServiceSpec

    info = client.scheduler_info(n_workers=-1)["workers"]
    gpus = sorted(a for a, w in info.items() if w.get("resources", {}).get("GPU"))
    if not gpus:
        return InferenceServices((), ())
    cpu_workers = sum(1 for w in info.values() if w.get("resources", {}).get("CPU"))
    # On a CPU standing in for a GPU the service runs as many networks at once as the CPU
    # workers it serves would have run themselves, each with the same threads.
    service = ServiceSpec(spec.backend, spec.precision, spec.cpu_threads,
                          cpu_concurrency=max(1, cpu_workers // len(gpus)), max_batch=max_batch,
                          transit=transit)
    futures = tuple(
        client.submit(InferenceService, service, actor=True, workers=[address],
                      resources={"GPU": 1}, allow_other_workers=False,
                      key=f"screen-inference-{n}", pure=False)
        for n, address in enumerate(gpus))
    for future in futures:
        future.result()  # the service is up (or its error is raised here)
    handles = tuple(ServiceHandle(address, f.key) for address, f in zip(gpus, futures))
    logger.info("inference services on %s", ", ".join(h.address for h in handles))
    return InferenceServices(handles, futures)


class HideIdentifiersInLogs(WorkerPlugin):
    """Makes each worker's log messages name no patient (see ``pseudonym.hide_in_logs``),
    including workers started later, as after a restart."""

    def __init__(self, pseudonymizer: pseudonym.Pseudonymizer) -> None:
        self.pseudonymizer = pseudonymizer

    def setup(self, worker) -> None:
        pseudonym.hide_in_logs(self.pseudonymizer)


def hide_in_cluster_logs(client: Client, pseudonymizer: pseudonym.Pseudonymizer) -> None:
    """Pseudonymise every log message of this process and of the cluster's workers."""
    pseudonym.hide_in_logs(pseudonymizer)
    client.register_plugin(HideIdentifiersInLogs(pseudonymizer), name="hide-identifiers-in-logs")

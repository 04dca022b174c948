"""How much memory this process has used: what the benchmarks and the sweep summary report."""

from __future__ import annotations

import resource
import sys


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB.

    On Linux this is the kernel's high-water mark (VmHWM), not getrusage's ru_maxrss: a
    process started by fork and exec carries in ru_maxrss its parent's resident size at the
    fork, so a benchmark's child started from a big parent would report the parent's memory.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes there, KiB here

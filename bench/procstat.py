"""Peak memory of a benchmarked child process (Linux), shared by the bench scripts.

Not ``ru_maxrss`` from ``wait4``: Linux carries the parent's peak into a child across
fork and exec, so a large benchmark process would report its own size as the child's.
``VmHWM`` in ``/proc/PID/status`` belongs to the child's own memory; it is polled until
the child exits.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from contextlib import suppress
from pathlib import Path


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory (Linux ``VmHWM``, MB) of running process ``pid``; 0 if gone."""
    with suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_with_peak(proc: subprocess.Popen[bytes], interval_s: float = 0.02
                   ) -> tuple[int, resource.struct_rusage, float]:
    """Wait for ``proc``: (exit code, its rusage, its peak RSS in MB polled every
    ``interval_s`` seconds). Sets ``proc.returncode``."""
    peak = [0.0]

    def watch() -> None:
        while proc.returncode is None:
            peak[0] = max(peak[0], vm_hwm_mb(proc.pid))
            time.sleep(interval_s)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    watcher.join()
    return proc.returncode, usage, peak[0]

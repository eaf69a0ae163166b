"""CPU and memory meters: the server's by pid, the generator's own."""

import asyncio
import time

import psutil


def process_cpu(pid: int) -> float:
    """Return a process's CPU time so far (user plus system), in seconds.

    Args:
        pid: The process id.
    """
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def process_rss(pid: int) -> int:
    """Return a process's resident memory in bytes.

    Args:
        pid: The process id.
    """
    return psutil.Process(pid).memory_info().rss


def now_ns() -> int:
    """Return CLOCK_MONOTONIC in nanoseconds, comparable across processes."""
    return time.monotonic_ns()


def sleep_until(deadline_ns: int) -> None:
    """Block until CLOCK_MONOTONIC reaches the deadline.

    Args:
        deadline_ns: The moment, in monotonic nanoseconds.
    """
    left = (deadline_ns - time.monotonic_ns()) / 1e9
    if left > 0:
        time.sleep(left)


class ServerWindow:
    """The server's CPU over a window, sampled by the parent process."""

    def __init__(self, pid: int) -> None:
        """Create the meter.

        Args:
            pid: The server's process id.
        """
        self.pid = pid
        self._start_cpu = 0.0
        self._start_ns = 0

    def start(self) -> None:
        """Take the first sample."""
        self._start_cpu = process_cpu(self.pid)
        self._start_ns = time.monotonic_ns()

    def stop(self) -> dict:
        """Take the second sample.

        Returns:
            ``cpu_s`` (CPU seconds used), ``wall_s`` and ``cores`` (their
            ratio: 1.0 is one core kept busy).
        """
        cpu = process_cpu(self.pid) - self._start_cpu
        wall = (time.monotonic_ns() - self._start_ns) / 1e9
        return {"cpu_s": cpu, "wall_s": wall, "cores": cpu / wall if wall else 0.0}


class OwnWindow:
    """This process's CPU time over a window, sampled on its event loop."""

    def __init__(self, start_ns: int, end_ns: int) -> None:
        """Schedule the two samples.

        Args:
            start_ns: Window start, monotonic nanoseconds.
            end_ns: Window end, monotonic nanoseconds.
        """
        loop = asyncio.get_running_loop()
        self.cpu_s = 0.0
        self._start = None
        loop.call_at(start_ns / 1e9, self._sample_start)
        loop.call_at(end_ns / 1e9, self._sample_end)

    def _sample_start(self) -> None:
        """Record the CPU time at the window's start."""
        self._start = time.process_time()

    def _sample_end(self) -> None:
        """Record the CPU used since the window's start."""
        if self._start is not None:
            self.cpu_s = time.process_time() - self._start

"""Run load across several OS processes, in phases, behind a barrier.

A worker is an ``async def worker(spec, control)`` named by
``"module:function"``.  It sets itself up (connects, logs in), then calls
``await control.ready(info)`` at each barrier; the parent answers every
worker at once with the same payload (a phase and its start time), so the
processes start each phase together.  The ``info`` of one barrier carries
the results of the phase before it.  What the coroutine returns is the
worker's final result.
"""

import asyncio
import importlib
import multiprocessing
import multiprocessing.connection
import resource
import time
import traceback

_CONTEXT = multiprocessing.get_context("spawn")


class WorkerFailed(Exception):
    """A worker process raised; the message holds its traceback."""


class Control:
    """The worker's side of the barrier."""

    def __init__(self, pipe: multiprocessing.connection.Connection) -> None:
        """Wrap the pipe to the parent.

        Args:
            pipe: This worker's end of its pipe.
        """
        self._pipe = pipe

    async def ready(self, info=None) -> dict:
        """Report ready and wait for the parent's go.

        The event loop keeps running while this waits, so open
        connections go on being served.

        Args:
            info: Anything picklable for the parent (a phase's results).

        Returns:
            The payload the parent sent with its go.
        """
        self._pipe.send(("ready", info))
        kind, payload = await asyncio.to_thread(self._pipe.recv)
        return payload


def _raise_nofile_limit() -> None:
    """Raise the soft limit on open files to the hard limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _worker_main(pipe, target: str, spec: dict) -> None:
    """Entry point of a worker process.

    Args:
        pipe: The worker's end of its pipe.
        target: ``"module:function"`` of the worker coroutine.
        spec: Its arguments.
    """
    _raise_nofile_limit()
    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    try:
        result = asyncio.run(function(spec, Control(pipe)))
    except BaseException:
        pipe.send(("error", traceback.format_exc()))
    else:
        pipe.send(("result", result))
    finally:
        pipe.close()


class WorkerPool:
    """The parent's side: start the workers, run the barriers, collect."""

    def __init__(self, target: str, specs: list[dict]) -> None:
        """Describe the pool; nothing starts before ``start``.

        Args:
            target: ``"module:function"`` of the worker coroutine.
            specs: One spec per worker process.
        """
        self._target = target
        self._specs = specs
        self._processes: list = []
        self._pipes: list = []

    def __enter__(self) -> "WorkerPool":
        """Start the workers.

        Returns:
            The pool.
        """
        for spec in self._specs:
            parent_end, child_end = _CONTEXT.Pipe()
            process = _CONTEXT.Process(
                target=_worker_main, args=(child_end, self._target, spec), daemon=True
            )
            process.start()
            child_end.close()
            self._processes.append(process)
            self._pipes.append(parent_end)
        return self

    def __exit__(self, *exc_info) -> None:
        """Stop whatever workers are still running."""
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)

    @property
    def pids(self) -> list[int]:
        """The workers' process ids."""
        return [p.pid for p in self._processes]

    def _collect(self, expected: str, timeout: float) -> list:
        """Wait for one message of the given kind from every worker.

        Args:
            expected: ``"ready"`` or ``"result"``.
            timeout: Seconds to wait in all.

        Returns:
            The messages' payloads, in worker order.

        Raises:
            WorkerFailed: A worker raised, died or did not answer in time.
        """
        deadline = time.monotonic() + timeout
        answers: dict[int, object] = {}
        while len(answers) < len(self._pipes):
            waiting = [p for i, p in enumerate(self._pipes) if i not in answers]
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerFailed(f"{len(waiting)} workers silent for {timeout} s")
            for pipe in multiprocessing.connection.wait(waiting, timeout=left):
                index = self._pipes.index(pipe)
                try:
                    kind, payload = pipe.recv()
                except EOFError as error:
                    raise WorkerFailed(f"worker {index} died") from error
                if kind == "error":
                    raise WorkerFailed(f"worker {index}:\n{payload}")
                if kind != expected:
                    raise WorkerFailed(f"worker {index} sent {kind}, not {expected}")
                answers[index] = payload
        return [answers[i] for i in range(len(self._pipes))]

    def wait_ready(self, timeout: float = 120.0) -> list:
        """Wait until every worker has reached its next barrier.

        Args:
            timeout: Seconds to wait for the workers.

        Returns:
            The ``info`` each worker passed to ``ready``.
        """
        return self._collect("ready", timeout)

    def go(self, payload: dict) -> None:
        """Release every worker waiting at the barrier.

        Args:
            payload: What each worker's ``ready`` returns.
        """
        for pipe in self._pipes:
            pipe.send(("go", payload))

    def barrier(self, payload: dict, timeout: float = 120.0) -> list:
        """Wait until every worker is ready, then send them all ``payload``.

        Args:
            payload: What each worker's ``ready`` returns.
            timeout: Seconds to wait for the workers.

        Returns:
            The ``info`` each worker passed to ``ready``.
        """
        infos = self.wait_ready(timeout)
        self.go(payload)
        return infos

    def results(self, timeout: float = 120.0) -> list:
        """Wait for every worker's final result.

        Args:
            timeout: Seconds to wait.

        Returns:
            The results, in worker order.
        """
        return self._collect("result", timeout)


def split(items: list, parts: int) -> list[list]:
    """Split a list into ``parts`` interleaved slices, dropping empty ones.

    Args:
        items: What to split.
        parts: How many slices.

    Returns:
        The non-empty slices.
    """
    return [s for s in (items[i::parts] for i in range(parts)) if s]

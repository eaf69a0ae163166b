"""Workers that log in and hold, churn or storm sessions.

``idle_worker`` registers its accounts and holds the connections open;
``storm_worker`` logs its accounts in all at once at the go;
``churn_worker`` keeps its accounts online and, at a given rate, closes
one and logs it in again, counting the presence frames every client gets.
"""

import asyncio
import itertools
import time

from bench.loadgen import accounts
from bench.loadgen.client import Connection, connect
from bench.loadgen.meter import OwnWindow

PRESENCE_EVENTS = ("presence", "online_users", "online_users_changed")


async def idle_worker(spec: dict, control) -> dict:
    """Register accounts, hold them open and idle until told to stop.

    Args:
        spec: ``address``, ``names`` and ``concurrency``.
        control: The barrier.

    Returns:
        How many connections were still open at the end.
    """
    address = spec["address"]
    conns: list[Connection] = []
    semaphore = asyncio.Semaphore(spec.get("concurrency", 32))

    async def one(name):
        async with semaphore:
            account = {"username": name, "password": accounts.PASSWORD}
            conns.append(await accounts.open_session(address, account, "register"))

    started = time.monotonic()
    await asyncio.gather(*(one(n) for n in spec["names"]))
    setup_s = time.monotonic() - started
    go = await control.ready({"open": len(conns), "setup_s": setup_s})
    cpu = OwnWindow(go["window_start_ns"], go["window_end_ns"])
    await control.ready({"cpu_s": None})
    open_count = sum(1 for c in conns if not c.closed.done())
    await accounts.close_all(conns)
    return {"open": open_count, "cpu_s": cpu.cpu_s}


async def storm_worker(spec: dict, control) -> dict:
    """Connect, then at the go send every login at once.

    Args:
        spec: ``address`` and ``accounts``.
        control: The barrier.

    Returns:
        The first send and last reply times, and the logins that failed.
    """
    address = spec["address"]
    conns = [
        await connect(address["host"], address["port"], address["path"])
        for _ in spec["accounts"]
    ]
    go = await control.ready()
    await asyncio.sleep(max(0.0, go["start_ns"] / 1e9 - time.monotonic()))
    first_ns = time.monotonic_ns()
    futures = [
        c.send_request("login", {"username": a["username"], "password": a["password"]})
        for c, a in zip(conns, spec["accounts"], strict=True)
    ]
    replies = await asyncio.gather(
        *(asyncio.wait_for(f, 300) for f in futures), return_exceptions=True
    )
    last_ns = time.monotonic_ns()
    failed = sum(1 for r in replies if not isinstance(r, dict) or not r.get("ok"))
    await accounts.close_all(conns)
    return {"first_ns": first_ns, "last_ns": last_ns, "failed": failed}


class _Counter:
    """Counts presence frames received by one process's clients."""

    def __init__(self) -> None:
        """Start at zero."""
        self.counts = dict.fromkeys(PRESENCE_EVENTS, 0)
        self.counting = False

    def on_event(self, frame: dict, _received_ns: int) -> None:
        """Count one event if it is a presence frame.

        Args:
            frame: The event frame.
            _received_ns: Its arrival time.
        """
        name = frame.get("event")
        if self.counting and name in self.counts:
            self.counts[name] += 1


async def churn_worker(spec: dict, control) -> dict:
    """Keep accounts online and re-log them in at a steady rate.

    Args:
        spec: ``address`` and ``accounts``.
        control: The barrier.

    Returns:
        Logins done in the window, failures, presence frame counts and
        this process's CPU in the window.
    """
    address = spec["address"]
    counter = _Counter()
    sessions: dict[int, Connection] = {}

    async def log_in(index: int) -> None:
        conn = await accounts.open_session(address, dict(spec["accounts"][index]))
        conn.on_event = counter.on_event
        # Events that came in the same read as the login reply were
        # buffered before on_event was set.
        for name in PRESENCE_EVENTS:
            for data in conn.drain_events(name):
                counter.on_event({"event": name, "data": data}, 0)
        sessions[index] = conn

    semaphore = asyncio.Semaphore(32)

    async def bounded(index):
        async with semaphore:
            await log_in(index)

    await asyncio.gather(*(bounded(i) for i in range(len(spec["accounts"]))))
    go = await control.ready()
    cpu = OwnWindow(go["window_start_ns"], go["window_end_ns"])
    await asyncio.sleep(max(0.0, go["window_start_ns"] / 1e9 - time.monotonic()))
    counter.counting = True

    logins, failed, tasks = 0, 0, set()
    turn = itertools.cycle(range(len(spec["accounts"])))
    start = time.monotonic_ns()

    async def cycle(index: int) -> None:
        nonlocal logins, failed
        old = sessions.pop(index, None)
        if old is not None:
            await old.close()
        try:
            await log_in(index)
            logins += 1
        except Exception:  # noqa: BLE001 - count it and go on
            failed += 1

    issued = 0
    while time.monotonic_ns() < go["window_end_ns"]:
        due = int(go["rate"] * (time.monotonic_ns() - start) / 1e9) - issued
        for _ in range(due):
            issued += 1
            task = asyncio.ensure_future(cycle(next(turn)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(0.005)
    counter.counting = False
    if tasks:
        await asyncio.wait(tasks, timeout=10)
    result = {"logins": logins, "failed": failed, "cpu_s": cpu.cpu_s}
    result.update(counter.counts)
    await control.ready(result)
    await accounts.close_all(list(sessions.values()))
    return result

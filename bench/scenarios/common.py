"""What the scenarios share: the run context, phase driving, summaries."""

import asyncio
import dataclasses
import threading
import time
from pathlib import Path

from bench import servers
from bench.loadgen import accounts, meter
from bench.loadgen.stats import ratio, summarize_ns
from bench.loadgen.workers import WorkerPool, split

CHAT_WORKER = "bench.loadgen.chat_worker:worker"


@dataclasses.dataclass
class Context:
    """One benchmark run's settings and what it collects for the plot.

    Attributes:
        quick: Shrink every scenario.
        targets: The servers under test, ``chatd`` and/or ``relay``.
        procs: Generator processes for the heavy scenarios.
        out_dir: Where results go.
        keep_logs: Keep the servers' working directories.
        curves: Load points for the plot: target -> list of dicts with
            ``offered_per_s``, ``p50_ms`` and ``p99_ms``.
    """

    quick: bool
    targets: list[str]
    procs: int
    out_dir: Path
    keep_logs: bool = False
    curves: dict = dataclasses.field(default_factory=dict)

    def size(self, full, quick):
        """Pick a figure by mode.

        Args:
            full: The value for a full run.
            quick: The value for ``--quick``.
        """
        return quick if self.quick else full


def start_phase(delay_s: float, warmup_s: float, duration_s: float, **extra) -> dict:
    """Describe a load phase starting a little from now.

    Args:
        delay_s: Seconds until senders start.
        warmup_s: Seconds of sending before the measured window.
        duration_s: Length of the measured window.
        **extra: More keys for the workers (``rate``, ``pause_slow``...).

    Returns:
        The go payload.
    """
    start = time.monotonic_ns() + int(delay_s * 1e9)
    window_start = start + int(warmup_s * 1e9)
    go = {
        "phase": "run",
        "start_ns": start,
        "window_start_ns": window_start,
        "window_end_ns": window_start + int(duration_s * 1e9),
    }
    go.update(extra)
    return go


class RssSampler:
    """Samples a process's resident memory in a thread while a phase runs."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        """Create the sampler.

        Args:
            pid: The process.
            interval_s: Seconds between samples.
        """
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        """Take samples until stopped."""
        while not self._stop.is_set():
            try:
                self.samples.append(meter.process_rss(self.pid))
            except Exception:  # noqa: BLE001 - the process may be gone
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "RssSampler":
        """Start sampling."""
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()


def measure_window(server: servers.Server, go: dict, rss: bool = False) -> dict:
    """Block through a phase's window, metering the server.

    Args:
        server: The server under test.
        go: The phase's go payload.
        rss: Also sample resident memory through the window.

    Returns:
        The server's ``cores`` and ``cpu_s`` in the window, and with
        ``rss`` its ``rss_start``, ``rss_max`` and ``rss_end`` in bytes.
    """
    window = meter.ServerWindow(server.pid)
    meter.sleep_until(go["start_ns"])
    sampler = RssSampler(server.pid) if rss else None
    if sampler:
        sampler.__enter__()
    meter.sleep_until(go["window_start_ns"])
    window.start()
    meter.sleep_until(go["window_end_ns"])
    figures = window.stop()
    if sampler:
        sampler.__exit__()
        figures["rss_start"] = sampler.samples[0] if sampler.samples else None
        figures["rss_max"] = max(sampler.samples, default=None)
        figures["rss_end"] = sampler.samples[-1] if sampler.samples else None
    return figures


def merge_phase(results: list[dict], go: dict, server_figures: dict) -> dict:
    """Combine the workers' results of one phase into its figures.

    Args:
        results: One result per worker.
        go: The phase's go payload.
        server_figures: What measure_window returned.

    Returns:
        Rates per second, latency percentiles, errors and CPU.
    """
    duration = (go["window_end_ns"] - go["window_start_ns"]) / 1e9
    latencies = [lat for r in results for lat in r["latencies"]]
    error_codes: dict = {}
    for result in results:
        for code, count in result["error_codes"].items():
            error_codes[code] = error_codes.get(code, 0) + count
    figures = {
        "window_s": round(duration, 2),
        "sent": sum(r["sent"] for r in results),
        "committed_per_s": round(sum(r["committed"] for r in results) / duration, 1),
        "delivered_per_s": round(sum(r["delivered"] for r in results) / duration, 1),
        "skipped": sum(r["skipped"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "error_codes": error_codes,
        "server_cores": round(server_figures["cores"], 3),
        "client_cores": round(sum(r["cpu_s"] for r in results) / duration, 3),
        "client_procs": len(results),
        "closed_by_server": sum(r["closed_by_server"] for r in results),
        "close_codes": sorted({c for r in results for c in r["close_codes"]}, key=str),
    }
    figures.update(summarize_ns(latencies))
    for key in ("rss_start", "rss_max", "rss_end"):
        if key in server_figures:
            figures[key] = server_figures[key]
    return figures


class ChatPhases:
    """Drives a pool of messaging workers through phases, one at a time."""

    def __init__(self, server: servers.Server, specs: list[dict]) -> None:
        """Describe the pool.

        Args:
            server: The server under test.
            specs: One chat worker spec per process.
        """
        self.server = server
        self.pool = WorkerPool(CHAT_WORKER, specs)
        self.senders_per_worker = [
            sum(1 for m in spec["members"] if m.get("target")) for spec in specs
        ]

    def __enter__(self) -> "ChatPhases":
        """Start the workers and wait until all members are logged in."""
        self.pool.__enter__()
        self.pool.wait_ready(timeout=300)
        return self

    def __exit__(self, *exc_info) -> None:
        """Stop the workers."""
        try:
            if exc_info[0] is None:
                self.pool.go({"phase": "stop"})
                self.pool.results(timeout=60)
        finally:
            self.pool.__exit__(*exc_info)

    def run(
        self,
        warmup_s: float,
        duration_s: float,
        rate: float | None = None,
        rss: bool = False,
        raw: bool = False,
        on_start=None,
        **extra,
    ) -> dict:
        """Run one phase on every worker at once.

        Args:
            warmup_s: Seconds of load before the measured window.
            duration_s: The measured window.
            rate: Total messages per second, or None for closed loop.
            rss: Sample the server's memory through the window.
            raw: Return the workers' raw results under ``"raw"`` too.
            on_start: Called with the go payload once the workers have it,
                to start something else in step with the phase.
            **extra: More go keys (``pause_slow``, ``drain_s``).

        Returns:
            The phase's merged figures.
        """
        total_senders = sum(self.senders_per_worker) or 1
        gos = []
        base = start_phase(0.3, warmup_s, duration_s, **extra)
        for senders in self.senders_per_worker:
            go = dict(base)
            go["rate"] = None if rate is None else rate * senders / total_senders
            gos.append(go)
        for pipe, go in zip(self.pool._pipes, gos, strict=True):
            pipe.send(("go", go))
        if on_start is not None:
            on_start(base)
        server_figures = measure_window(self.server, base, rss=rss)
        results = self.pool.wait_ready(timeout=duration_s + warmup_s + 120)
        figures = merge_phase(results, base, server_figures)
        figures["offered_per_s"] = None if rate is None else round(rate, 1)
        if raw:
            figures["raw"] = results
        return figures


def chat_specs(
    address: dict,
    members: list[dict],
    procs: int,
    tag: str,
    **options,
) -> list[dict]:
    """Split members over worker processes.

    Args:
        address: The server's address.
        members: Member specs (``account``, ``target``, ``slow``...).
        procs: How many processes.
        tag: Prefix for client_msg_ids.
        **options: ``raw_receive``, ``in_flight``, ``ack_every``...

    Returns:
        One spec per process.
    """
    specs = []
    for index, part in enumerate(split(members, procs)):
        spec = {"address": address, "members": part, "tag": f"{tag}{index}"}
        spec.update(options)
        specs.append(spec)
    return specs


def public_accounts(accounts_list: list[dict]) -> list[dict]:
    """Return accounts reduced to what workers need (picklable, small).

    Args:
        accounts_list: Accounts from accounts.register.
    """
    return [
        {"username": a["username"], "password": a["password"], "id": a["id"]}
        for a in accounts_list
    ]


async def setup_users(
    server: servers.Server,
    prefix: str,
    count: int,
    pairs: list[tuple[int, int]] = (),
    group_owner: int | None = None,
    group_members: list[int] | None = None,
) -> tuple[list[dict], int | None]:
    """Register users, make friends and a group, then log everyone out.

    Args:
        server: The server under test.
        prefix: Username prefix.
        count: How many users.
        pairs: Index pairs to befriend (skipped where friendship is implicit).
        group_owner: Index of the group's creator, if a group is wanted.
        group_members: Indexes of the other members.

    Returns:
        The accounts and the group's id (or None).
    """
    address = server.address()
    registered, conns = await accounts.register(
        address, accounts.account_names(prefix, count)
    )
    try:
        friend_pairs = list(pairs)
        if group_owner is not None:
            friend_pairs += [(group_owner, m) for m in group_members]
        if server.needs_friends and friend_pairs:
            await accounts.befriend(
                [
                    (conns[a], registered[a], conns[b], registered[b])
                    for a, b in friend_pairs
                ]
            )
        group_id = None
        if group_owner is not None:
            member_ids = [registered[m]["id"] for m in group_members]
            group_id = await accounts.create_group(
                conns[group_owner], f"{prefix}-group", member_ids
            )
    finally:
        await accounts.close_all(conns)
    return public_accounts(registered), group_id


def measure_targets(ctx: "Context", measure) -> dict:
    """Run ``measure(ctx, target, workdir)`` for every target of the run, in
    one working directory, and collect the figures by target name."""
    figures = {}
    with servers.workdir(ctx.keep_logs) as work:
        for target in ctx.targets:
            figures[target] = measure(ctx, target, work)
    return figures


def run_setup(coroutine):
    """Run a set-up coroutine on a fresh event loop in this process.

    Args:
        coroutine: The coroutine.

    Returns:
        Its result.
    """
    return asyncio.run(coroutine)


def target_check(value, limit, op: str = "<=") -> bool | None:
    """Compare a figure with its target, None when it is missing.

    Args:
        value: The figure.
        limit: The target.
        op: ``<=``, ``<`` or ``>=``.
    """
    if value is None or limit is None:
        return None
    if op == "<":
        return value < limit
    if op == ">=":
        return value >= limit
    return value <= limit


def line(name: str, ctx: Context, figures: dict, ratios: dict, targets: dict) -> dict:
    """Assemble a scenario's JSON line.

    Args:
        name: The scenario.
        ctx: The run context.
        figures: Per target (``chatd``, ``relay``, ``echo``...) figures.
        ratios: chatd's figures over the references'.
        targets: Per target check: ``{"met": bool|None, "detail": str}``.

    Returns:
        The line's object; ``target_met`` is the conjunction of the checks
        (None when chatd was not measured).
    """
    mets = [t["met"] for t in targets.values()]
    if "chatd" not in figures or any(m is None for m in mets):
        met = None if not mets or any(m is None for m in mets) else all(mets)
    else:
        met = all(mets)
    return {
        "scenario": name,
        "quick": ctx.quick,
        "figures": figures,
        "ratios": ratios,
        "targets": targets,
        "target_met": met,
    }


__all__ = ["ratio", "summarize_ns"]

"""login_storm: many password logins at once while one friend pair chats.

chatd runs at bcrypt cost 12.  Figure: the pair's p99 from send to event
while the storm's logins are in progress, against its p99 before it.
"""

import time

from bench import servers
from bench.loadgen.stats import percentile
from bench.loadgen.workers import WorkerPool
from bench.scenarios import common

NAME = "login_storm"
STORM_WORKER = "bench.loadgen.session_workers:storm_worker"
PAIR_RATE = 50.0
BCRYPT_COST = 12


def _bcrypt_seconds(cost: int) -> float:
    """Time one bcrypt hash at the given cost here, to size the window.

    Args:
        cost: The bcrypt cost.
    """
    import bcrypt

    started = time.monotonic()
    bcrypt.hashpw(b"benchmark-password", bcrypt.gensalt(cost))
    return time.monotonic() - started


def _p99_between(latencies: list, send_times: list, start_ns: int, end_ns: int):
    """Return the p99 (ms) of the samples sent in a time range.

    Args:
        latencies: Latencies, ns.
        send_times: Their send times, ns.
        start_ns: Range start.
        end_ns: Range end.

    Returns:
        ``(p99_ms, count)``.
    """
    chosen = sorted(
        lat
        for lat, sent in zip(latencies, send_times, strict=True)
        if start_ns <= sent <= end_ns
    )
    p99 = percentile(chosen, 0.99)
    return (None if p99 is None else round(p99 / 1e6, 3)), len(chosen)


def _measure(ctx: common.Context, target: str, work, hash_s: float) -> dict:
    """Run the scenario against one target.

    Args:
        ctx: The run context.
        target: ``chatd`` or ``relay``.
        work: The working directory.
        hash_s: Seconds per bcrypt hash at cost 12 here.

    Returns:
        The target's figures.
    """
    storm_size = ctx.size(100, 10)
    before_s = ctx.size(5.0, 2.0)
    during_s = max(2.0, storm_size * hash_s * 1.5) if target == "chatd" else 2.0

    with servers.target(target, work, bcrypt_cost=BCRYPT_COST) as server:
        registered, _ = common.run_setup(
            common.setup_users(server, "storm", storm_size + 2, pairs=[(0, 1)])
        )
        pair = [
            {"account": registered[0], "target": {"to_user": registered[1]["id"]}},
            {"account": registered[1], "target": {"to_user": registered[0]["id"]}},
        ]
        specs = common.chat_specs(
            server.address(), pair, 1, "s", in_flight=16, keep_send_times=True
        )
        storm_spec = [{"address": server.address(), "accounts": registered[2:]}]
        with (
            common.ChatPhases(server, specs) as phases,
            WorkerPool(STORM_WORKER, storm_spec) as storm,
        ):
            before = phases.run(0.5, before_s, rate=PAIR_RATE)
            storm.wait_ready(timeout=120)
            during = phases.run(
                0.5,
                during_s,
                rate=PAIR_RATE,
                raw=True,
                drain_s=5.0,
                on_start=lambda go: storm.go({"start_ns": go["window_start_ns"]}),
            )
            storm_result = storm.results(timeout=during_s + 300)[0]

    raw = during.pop("raw")[0]
    storm_p99, samples = _p99_between(
        raw["latencies"],
        raw["send_times"],
        storm_result["first_ns"],
        storm_result["last_ns"],
    )
    storm_s = (storm_result["last_ns"] - storm_result["first_ns"]) / 1e9
    return {
        "logins": storm_size,
        "failed": storm_result["failed"],
        "storm_s": round(storm_s, 3),
        "logins_per_s": round(storm_size / storm_s, 1) if storm_s else None,
        "before": {k: before[k] for k in ("p50_ms", "p99_ms", "n", "errors")},
        "during": {
            "p99_ms": storm_p99,
            "n": samples,
            "server_cores": during["server_cores"],
        },
        "window_covered_storm": storm_result["last_ns"]
        <= storm_result["first_ns"] + int(during_s * 1e9),
    }


def run(ctx: common.Context) -> dict:
    """Run login_storm against every target.

    Args:
        ctx: The run context.

    Returns:
        The scenario's JSON line.
    """
    hash_s = _bcrypt_seconds(BCRYPT_COST)
    figures = {"bcrypt_cost12_s": round(hash_s, 3)}
    with servers.workdir(ctx.keep_logs) as work:
        for target in ctx.targets:
            figures[target] = _measure(ctx, target, work, hash_s)

    ratios, targets = {}, {}
    for target in ctx.targets:
        result = figures[target]
        ratios[f"{target}_during_vs_before_p99"] = common.ratio(
            result["during"]["p99_ms"], result["before"]["p99_ms"]
        )
    if "chatd" in figures:
        targets["pair_p99_during_storm"] = {
            "met": common.target_check(ratios["chatd_during_vs_before_p99"], 3.0, "<"),
            "detail": "the pair's p99 during the storm under 3x its p99 before",
        }
    return common.line(NAME, ctx, figures, ratios, targets)

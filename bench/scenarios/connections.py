"""connections: many idle authenticated connections.

Figures: the server's resident memory per connection (growth from before
the first connection to after the last, over the count) and the CPU it
uses while they all sit idle.
"""

import time

from bench import servers
from bench.loadgen import accounts
from bench.loadgen.workers import WorkerPool, split
from bench.scenarios import common

NAME = "connections"
IDLE_WORKER = "bench.loadgen.session_workers:idle_worker"


def _measure(ctx: common.Context, target: str, work) -> dict:
    """Run the scenario against one target.

    Args:
        ctx: The run context.
        target: ``chatd`` or ``relay``.
        work: The working directory.

    Returns:
        The target's figures.
    """
    count = ctx.size(10_000, 1_000)
    procs = ctx.size(max(4, ctx.procs), ctx.procs)
    idle_s = ctx.size(10.0, 3.0)
    names = accounts.account_names("conn", count)

    with servers.target(target, work) as server:
        time.sleep(0.5)
        rss_before = server.rss()
        specs = [
            {"address": server.address(), "names": part, "concurrency": 32}
            for part in split(names, procs)
        ]
        with WorkerPool(IDLE_WORKER, specs) as pool:
            infos = pool.wait_ready(timeout=900)
            time.sleep(2.0)
            rss_after = server.rss()
            go = common.start_phase(0.1, 0.0, idle_s)
            pool.go(go)
            idle = common.measure_window(server, go)
            pool.wait_ready(timeout=60)
            rss_idle_end = server.rss()
            pool.go({"phase": "stop"})
            results = pool.results(timeout=300)

    opened = sum(i["open"] for i in infos)
    per_conn = (rss_after - rss_before) / opened if opened else None
    return {
        "connections": opened,
        "still_open": sum(r["open"] for r in results),
        "setup_s": round(max(i["setup_s"] for i in infos), 1),
        "rss_before": rss_before,
        "rss_after": rss_after,
        "rss_idle_end": rss_idle_end,
        "rss_per_conn_kib": round(per_conn / 1024, 2) if per_conn else None,
        "idle_server_cores": round(idle["cores"], 4),
        "idle_client_cores": round(sum(r["cpu_s"] for r in results) / idle_s, 4),
        "client_procs": len(specs),
    }


def run(ctx: common.Context) -> dict:
    """Run connections against every target.

    Args:
        ctx: The run context.

    Returns:
        The scenario's JSON line.
    """
    figures = common.measure_targets(ctx, _measure)

    ratios, targets = {}, {}
    chatd, relay = figures.get("chatd"), figures.get("relay")
    if chatd and relay:
        ratios["rss_per_conn"] = common.ratio(
            chatd["rss_per_conn_kib"], relay["rss_per_conn_kib"]
        )
    if chatd:
        targets["memory_per_conn"] = {
            "met": common.target_check(chatd["rss_per_conn_kib"], 16, "<"),
            "detail": "under 16 KiB resident per idle authenticated connection",
        }
        targets["idle_cpu"] = {
            "met": common.target_check(chatd["idle_server_cores"], 0.05, "<"),
            "detail": "idle CPU under 5% of a core",
        }
    return common.line(NAME, ctx, figures, ratios, targets)

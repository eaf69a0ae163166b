"""slow_consumers: a group where some members stop reading.

Two phases on one server: every member reading, then the slow members
pause their sockets (with a small receive buffer, so the server's send
buffer fills).  Figures: the reading members' p99 in each phase and
their ratio, the server's resident-memory growth in the slow phase, and
how many slow members the server closed (and with which codes).
"""

from bench import servers
from bench.scenarios import common

NAME = "slow_consumers"
SENDERS = 4
# The per-connection cap assumed for the memory target: chatd's configured
# buffer cap is not known to the benchmark.
ASSUMED_CAP_BYTES = 1 << 20


def _measure(ctx: common.Context, target: str, work) -> dict:
    """Run the scenario against one target.

    Args:
        ctx: The run context.
        target: ``chatd`` or ``relay``.
        work: The working directory.

    Returns:
        The target's figures.
    """
    size = ctx.size(200, 40)
    slow_count = ctx.size(20, 4)
    rate = ctx.size(200.0, 100.0)
    duration = ctx.size(30.0, 3.0)

    with servers.target(target, work) as server:
        registered, group_id = common.run_setup(
            common.setup_users(
                server, "slow", size, group_owner=0, group_members=list(range(1, size))
            )
        )
        members = []
        for index, account in enumerate(registered):
            members.append(
                {
                    "account": account,
                    "target": {"group_id": group_id} if index < SENDERS else None,
                    "slow": index >= size - slow_count,
                }
            )
        specs = common.chat_specs(
            server.address(), members, ctx.procs, "w", in_flight=16, raw_receive=True
        )
        with common.ChatPhases(server, specs) as phases:
            baseline = phases.run(1.0, duration, rate=rate)
            slow = phases.run(1.0, duration, rate=rate, rss=True, pause_slow=True)

    growth = None
    if slow.get("rss_start") is not None:
        growth = slow["rss_max"] - slow["rss_start"]
    return {
        "group_size": size,
        "slow_members": slow_count,
        "rate": rate,
        "baseline": {k: baseline[k] for k in ("p50_ms", "p99_ms", "delivered_per_s")},
        "slow": {
            k: slow[k]
            for k in ("p50_ms", "p99_ms", "delivered_per_s", "server_cores", "errors")
        },
        "rss_growth": growth,
        "rss_growth_per_slow_member": growth // slow_count
        if growth is not None
        else None,
        "closed_by_server": slow["closed_by_server"],
        "close_codes": slow["close_codes"],
    }


def run(ctx: common.Context) -> dict:
    """Run slow_consumers against every target.

    Args:
        ctx: The run context.

    Returns:
        The scenario's JSON line.
    """
    figures = common.measure_targets(ctx, _measure)

    ratios, targets = {}, {}
    for target, result in figures.items():
        ratios[f"{target}_p99_slow_vs_baseline"] = common.ratio(
            result["slow"]["p99_ms"], result["baseline"]["p99_ms"]
        )
    if "chatd" in figures:
        chatd = figures["chatd"]
        targets["reading_p99"] = {
            "met": common.target_check(ratios["chatd_p99_slow_vs_baseline"], 1.5),
            "detail": "reading members' p99 at most 1.5x the run without slow ones",
        }
        targets["memory_bounded"] = {
            "met": common.target_check(
                chatd["rss_growth"], ASSUMED_CAP_BYTES * chatd["slow_members"]
            ),
            "detail": "RSS growth at most cap x slow members "
            f"(cap assumed {ASSUMED_CAP_BYTES} bytes)",
        }
    return common.line(NAME, ctx, figures, ratios, targets)

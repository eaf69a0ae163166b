"""private: friend pairs messaging each other, up to 16 requests in flight.

Figures per target: messages committed (replied ok) and delivered per
second at full rate (closed loop), and p50/p99 from send to the
recipient's event at full rate and at half of it; more paced points feed
the latency-against-load plot.
"""

from bench import servers
from bench.scenarios import common

NAME = "private"


def _measure(ctx: common.Context, target: str, work) -> dict:
    """Run the scenario against one target.

    Args:
        ctx: The run context.
        target: ``chatd`` or ``relay``.
        work: The working directory.

    Returns:
        The target's figures.
    """
    users = ctx.size(200, 20)
    warmup, duration = ctx.size((2.0, 8.0), (0.5, 2.0))
    fractions = ctx.size((0.25, 0.5, 0.75), (0.5,))
    pairs = [(i, i + 1) for i in range(0, users, 2)]

    nvx = None
    with servers.target(target, work) as server:
        if target == "chatd":
            nvx = servers.nvx_line(server)
        registered, _ = common.run_setup(
            common.setup_users(server, "priv", users, pairs=pairs)
        )
        members = []
        for a, b in pairs:
            members.append(
                {"account": registered[a], "target": {"to_user": registered[b]["id"]}}
            )
            members.append(
                {"account": registered[b], "target": {"to_user": registered[a]["id"]}}
            )
        specs = common.chat_specs(
            server.address(), members, ctx.procs, "p", in_flight=16
        )
        with common.ChatPhases(server, specs) as phases:
            full = phases.run(warmup, duration)
            curve = [dict(full, load="max")]
            max_rate = full["delivered_per_s"] or full["committed_per_s"]
            paced = {}
            for fraction in fractions:
                point = phases.run(warmup, duration, rate=max_rate * fraction)
                point["load"] = fraction
                paced[fraction] = point
                curve.append(point)

    ctx.curves.setdefault(NAME, {})[target] = [
        {
            "offered_per_s": p["offered_per_s"] or p["committed_per_s"],
            "delivered_per_s": p["delivered_per_s"],
            "p50_ms": p["p50_ms"],
            "p99_ms": p["p99_ms"],
        }
        for p in sorted(curve, key=lambda p: p["offered_per_s"] or p["committed_per_s"])
    ]
    keys = (
        "load",
        "offered_per_s",
        "delivered_per_s",
        "p50_ms",
        "p99_ms",
        "server_cores",
    )
    figures = {
        "users": users,
        "full": full,
        "half": paced.get(0.5),
        "curve": [{k: p.get(k) for k in keys} for p in curve],
    }
    if nvx is not None:
        figures["nvx_log_line"] = nvx
    return figures


def run(ctx: common.Context) -> dict:
    """Run private against every target and compare.

    Args:
        ctx: The run context.

    Returns:
        The scenario's JSON line.
    """
    figures = common.measure_targets(ctx, _measure)

    ratios, targets = {}, {}
    chatd, relay = figures.get("chatd"), figures.get("relay")
    if chatd and relay:
        ratios["committed_per_s"] = common.ratio(
            chatd["full"]["committed_per_s"], relay["full"]["committed_per_s"]
        )
        ratios["p99_half"] = common.ratio(
            chatd["half"]["p99_ms"], relay["half"]["p99_ms"]
        )
        targets["throughput_vs_relay"] = {
            "met": common.target_check(ratios["committed_per_s"], 0.5, ">="),
            "detail": "committed/s at least 0.5x the relay's",
        }
    if chatd:
        targets["p99_at_half_rate"] = {
            "met": common.target_check(chatd["half"]["p99_ms"], 50, "<"),
            "detail": "p99 under 50 ms at half of chatd's maximum rate",
        }
    return common.line(NAME, ctx, figures, ratios, targets)

"""group_fanout: one large group, a few senders, every member receiving.

Figures per target: deliveries (message events received) per second and
their p50/p99 from send; for chatd, the ratio to the relay's deliveries
for the same group.  Recipients read raw frames and decode only the send
time, so that 500 receiving sockets stay cheaper than the server.
"""

from bench import servers
from bench.scenarios import common

NAME = "group_fanout"


def _measure(ctx: common.Context, target: str, work) -> dict:
    """Run the scenario against one target.

    Args:
        ctx: The run context.
        target: ``chatd`` or ``relay``.
        work: The working directory.

    Returns:
        The target's figures.
    """
    size = ctx.size(500, 50)
    sender_count = ctx.size(10, 5)
    warmup, duration = ctx.size((2.0, 8.0), (0.5, 2.0))

    with servers.target(target, work) as server:
        registered, group_id = common.run_setup(
            common.setup_users(
                server, "fan", size, group_owner=0, group_members=list(range(1, size))
            )
        )
        members = []
        for index, account in enumerate(registered):
            sends = index < sender_count
            members.append(
                {
                    "account": account,
                    "target": {"group_id": group_id} if sends else None,
                }
            )
        specs = common.chat_specs(
            server.address(), members, ctx.procs, "g", in_flight=2, raw_receive=True
        )
        with common.ChatPhases(server, specs) as phases:
            result = phases.run(warmup, duration)
    result["group_size"] = size
    result["senders"] = sender_count
    return result


def run(ctx: common.Context) -> dict:
    """Run group_fanout against every target and compare.

    Args:
        ctx: The run context.

    Returns:
        The scenario's JSON line.
    """
    figures = common.measure_targets(ctx, _measure)

    ratios, targets = {}, {}
    chatd, relay = figures.get("chatd"), figures.get("relay")
    if chatd and relay:
        ratios["delivered_per_s"] = common.ratio(
            chatd["delivered_per_s"], relay["delivered_per_s"]
        )
        ratios["p99"] = common.ratio(chatd["p99_ms"], relay["p99_ms"])
        targets["deliveries_vs_relay"] = {
            "met": common.target_check(ratios["delivered_per_s"], 0.8, ">="),
            "detail": "deliveries/s at least 0.8x the relay's",
        }
    return common.line(NAME, ctx, figures, ratios, targets)

"""history: paging a long conversation from the newest page to the oldest.

Figures: p50/p99 per get_history page of 50 over the newest pages and
over the oldest ones, and whether the walk saw every message exactly once.
"""

import time

from bench import servers
from bench.loadgen import accounts
from bench.loadgen.stats import summarize_ns
from bench.scenarios import common

NAME = "history"
PAGE = 50


async def _measure(server: servers.Server, count: int, edge_pages: int) -> dict:
    """Fill a conversation of ``count`` messages, then page through it.

    Args:
        server: The server under test.
        count: Messages in the conversation.
        edge_pages: How many pages count as "newest" and as "oldest".

    Returns:
        The figures.
    """
    registered, _ = await common.setup_users(server, "hist", 2, pairs=[(0, 1)])
    reader = await accounts.open_session(server.address(), registered[0])
    fill_started = time.monotonic()
    await accounts.fill_conversation(
        reader, count, to_user=registered[1]["id"], tag="hist"
    )
    fill_s = time.monotonic() - fill_started

    latencies, ids = [], []
    before_id = None
    while True:
        params = {"with_user": registered[1]["id"], "limit": PAGE}
        if before_id is not None:
            params["before_id"] = before_id
        started = time.monotonic_ns()
        data = await reader.call("get_history", **params)
        latencies.append(time.monotonic_ns() - started)
        messages = data.get("messages") or []
        ids.extend(m["id"] for m in reversed(messages))
        if not data.get("has_more") or not messages:
            break
        before_id = messages[0]["id"]
    await reader.close()

    ordered = all(a > b for a, b in zip(ids, ids[1:], strict=False))
    return {
        "messages": count,
        "pages": len(latencies),
        "seen": len(ids),
        "complete": len(set(ids)) == count and ordered,
        "newest": summarize_ns(latencies[:edge_pages]),
        "oldest": summarize_ns(latencies[-edge_pages:]),
        "all": summarize_ns(latencies),
        "fill_s": round(fill_s, 2),
    }


def run(ctx: common.Context) -> dict:
    """Run history against every target.

    Args:
        ctx: The run context.

    Returns:
        The scenario's JSON line.
    """
    count = ctx.size(100_000, 2_000)
    edge = ctx.size(100, 10)
    figures = {}
    with servers.workdir(ctx.keep_logs) as work:
        for target in ctx.targets:
            with servers.target(target, work, history=True) as server:
                figures[target] = common.run_setup(_measure(server, count, edge))

    ratios, targets = {}, {}
    for target, result in figures.items():
        ratios[f"{target}_oldest_vs_newest_p99"] = common.ratio(
            result["oldest"]["p99_ms"], result["newest"]["p99_ms"]
        )
    chatd, relay = figures.get("chatd"), figures.get("relay")
    if chatd and relay:
        ratios["p99_vs_relay"] = common.ratio(
            chatd["all"]["p99_ms"], relay["all"]["p99_ms"]
        )
    if chatd:
        targets["p99_per_page"] = {
            "met": chatd["complete"]
            and common.target_check(chatd["all"]["p99_ms"], 20, "<"),
            "detail": "every message seen once; p99 under 20 ms per page",
        }
        targets["oldest_vs_newest"] = {
            "met": common.target_check(ratios["chatd_oldest_vs_newest_p99"], 1.5),
            "detail": "oldest pages' p99 at most 1.5x the newest pages'",
        }
    return common.line(NAME, ctx, figures, ratios, targets)

"""backlog: a user with many unacked messages logs in.

Figure: seconds from sending login to the arrival of the last backlog
message, acking each batch of offline_messages as it comes.
"""

import asyncio
import time

from bench import servers
from bench.loadgen import accounts
from bench.loadgen.client import connect
from bench.scenarios import common

NAME = "backlog"


async def _measure(server: servers.Server, count: int) -> dict:
    """Fill a backlog of ``count`` messages, then time its delivery.

    Args:
        server: The server under test.
        count: Backlog size.

    Returns:
        The figures.
    """
    registered, _ = await common.setup_users(server, "back", 2, pairs=[(0, 1)])
    address = server.address()
    sender = await accounts.open_session(address, registered[1])
    fill_started = time.monotonic()
    await accounts.fill_conversation(
        sender, count, to_user=registered[0]["id"], tag="backlog"
    )
    fill_s = time.monotonic() - fill_started
    await sender.close()

    conn = await connect(address["host"], address["port"], address["path"])
    started = time.monotonic_ns()
    await conn.call(
        "login", username=registered[0]["username"], password=accounts.PASSWORD
    )
    received, batches, seen = 0, 0, set()
    while received < count:
        data = await conn.wait_event("offline_messages", timeout=60)
        batches += 1
        messages = data.get("messages") or []
        for message in messages:
            seen.add(message["id"])
        received += len(messages)
        if messages and (data.get("has_more") or received >= count):
            conn.send_request("ack", {"up_to": messages[-1]["id"]}, lambda *_: None)
        if not data.get("has_more"):
            break
    elapsed = (time.monotonic_ns() - started) / 1e9
    await asyncio.sleep(0.1)
    await conn.close()
    return {
        "messages": count,
        "received": received,
        "distinct": len(seen),
        "batches": batches,
        "seconds": round(elapsed, 3),
        "messages_per_s": round(received / elapsed, 1) if elapsed else None,
        "fill_s": round(fill_s, 2),
    }


def run(ctx: common.Context) -> dict:
    """Run backlog against every target.

    Args:
        ctx: The run context.

    Returns:
        The scenario's JSON line.
    """
    count = ctx.size(10_000, 1_000)
    figures = {}
    with servers.workdir(ctx.keep_logs) as work:
        for target in ctx.targets:
            with servers.target(target, work) as server:
                figures[target] = common.run_setup(_measure(server, count))

    ratios, targets = {}, {}
    chatd, relay = figures.get("chatd"), figures.get("relay")
    if chatd and relay:
        ratios["seconds"] = common.ratio(chatd["seconds"], relay["seconds"])
    if chatd:
        complete = chatd["distinct"] == count
        limit = 2.0 * count / 10_000
        targets["delivered_in_time"] = {
            "met": complete and common.target_check(chatd["seconds"], limit, "<"),
            "detail": f"all {count} delivered in under {limit:g} s (2 s per 10,000)",
        }
    return common.line(NAME, ctx, figures, ratios, targets)

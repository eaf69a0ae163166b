"""latency_floor: one pair, one message in flight at a time.

Figures: p50/p99 from send to the recipient's event for chatd and the
relay, against the raw echo server's p50/p99 with one frame in flight.
"""

import asyncio
import time

from bench import servers
from bench.loadgen import accounts
from bench.loadgen.chat_worker import send_time_from_cmid
from bench.loadgen.client import connect
from bench.loadgen.stats import summarize_ns
from bench.scenarios import common

NAME = "latency_floor"


async def _chat_pair(server: servers.Server, count: int) -> dict:
    """Send ``count`` messages one at a time from one friend to the other.

    Args:
        server: chatd or the relay.
        count: Messages to time.

    Returns:
        The latency summary.
    """
    registered, _ = await common.setup_users(server, "floor", 2, pairs=[(0, 1)])
    sender = await accounts.open_session(server.address(), registered[0])
    recipient = await accounts.open_session(server.address(), registered[1])
    loop = asyncio.get_running_loop()
    latencies = []
    waiter = None

    def on_event(frame, received_ns):
        if frame.get("event") == "message" and waiter and not waiter.done():
            waiter.set_result((frame["data"]["message"], received_ns))

    recipient.on_event = on_event
    last_id = 0
    for seq in range(count + count // 10):
        waiter = loop.create_future()
        send_ns = time.monotonic_ns()
        reply = sender.send_request(
            "send_message",
            {
                "to_user": registered[1]["id"],
                "content": "ping",
                "client_msg_id": f"floor.{seq}.{send_ns}",
            },
        )
        message, received_ns = await asyncio.wait_for(waiter, 10)
        await asyncio.wait_for(reply, 10)
        last_id = message["id"]
        if seq >= count // 10:
            latencies.append(
                received_ns - send_time_from_cmid(message["client_msg_id"])
            )
    await recipient.call("ack", up_to=last_id)
    await accounts.close_all([sender, recipient])
    return summarize_ns(latencies)


async def _echo(server: servers.Server, count: int) -> dict:
    """Time ``count`` echoed frames, one at a time.

    Args:
        server: The echo server.
        count: Frames to time.

    Returns:
        The latency summary.
    """
    conn = await connect(server.host, server.port, server.path)
    loop = asyncio.get_running_loop()
    latencies = []
    waiter = None

    def on_frame(payload, received_ns):
        if waiter and not waiter.done():
            waiter.set_result(received_ns)

    conn.on_frame = on_frame
    payload = b'{"action":"send_message","to_user":2,"content":"ping","id":1}'
    for seq in range(count + count // 10):
        waiter = loop.create_future()
        send_ns = time.monotonic_ns()
        conn.send_raw(payload)
        received_ns = await asyncio.wait_for(waiter, 10)
        if seq >= count // 10:
            latencies.append(received_ns - send_ns)
    await conn.close()
    return summarize_ns(latencies)


def run(ctx: common.Context) -> dict:
    """Run latency_floor against every target and the echo server.

    Args:
        ctx: The run context.

    Returns:
        The scenario's JSON line.
    """
    count = ctx.size(3000, 300)
    figures = {}
    with servers.workdir(ctx.keep_logs) as work:
        with servers.reference("echo", work) as echo:
            figures["echo"] = common.run_setup(_echo(echo, count))
        for target in ctx.targets:
            with servers.target(target, work) as server:
                figures[target] = common.run_setup(_chat_pair(server, count))

    ratios, targets = {}, {}
    echo = figures["echo"]
    for target in ctx.targets:
        ratios[f"{target}_p50_vs_echo"] = common.ratio(
            figures[target]["p50_ms"], echo["p50_ms"]
        )
        ratios[f"{target}_p99_vs_echo"] = common.ratio(
            figures[target]["p99_ms"], echo["p99_ms"]
        )
    if "chatd" in figures:
        targets["p50_vs_echo"] = {
            "met": common.target_check(ratios["chatd_p50_vs_echo"], 1.3),
            "detail": "p50 at most 1.3x the echo server's",
        }
        targets["p99_vs_echo"] = {
            "met": common.target_check(ratios["chatd_p99_vs_echo"], 1.5),
            "detail": "p99 at most 1.5x the echo server's",
        }
    return common.line(NAME, ctx, figures, ratios, targets)

"""Scenario set-up through the protocol: users, friendships, groups, logins."""

import asyncio

from bench.loadgen.client import Connection, connect

PASSWORD = "bench-password-1"


def account_names(prefix: str, count: int) -> list[str]:
    """Return ``count`` distinct valid usernames.

    Args:
        prefix: A short prefix naming the scenario.
        count: How many.
    """
    return [f"{prefix}_{i:05d}" for i in range(count)]


async def _bounded(coroutines, concurrency: int) -> list:
    """Run coroutines with at most ``concurrency`` at a time, in order.

    Args:
        coroutines: The coroutines.
        concurrency: The limit.

    Returns:
        Their results, in order.
    """
    semaphore = asyncio.Semaphore(concurrency)

    async def run(coroutine):
        async with semaphore:
            return await coroutine

    return await asyncio.gather(*(run(c) for c in coroutines))


async def open_session(
    address: dict, account: dict, action: str = "login", rcvbuf: int | None = None
) -> Connection:
    """Connect and log in (or register) one account.

    Args:
        address: ``host``, ``port`` and ``path``.
        account: ``username`` and ``password``; gets ``id`` on register.
        action: ``login`` or ``register``.
        rcvbuf: A small SO_RCVBUF for a client meant to fall behind.

    Returns:
        The logged-in connection.
    """
    conn = await connect(address["host"], address["port"], address["path"], rcvbuf)
    data = await conn.call(
        action, username=account["username"], password=account["password"]
    )
    account["id"] = data["user"]["id"]
    return conn


async def register(
    address: dict, names: list[str], concurrency: int = 32
) -> tuple[list[dict], list[Connection]]:
    """Register accounts and keep their connections open.

    Args:
        address: The server's address.
        names: The usernames.
        concurrency: Registrations in flight at once.

    Returns:
        The accounts (``username``, ``password``, ``id``) and their open
        connections, in the order of ``names``.
    """
    accounts = [{"username": name, "password": PASSWORD} for name in names]
    conns = await _bounded(
        (open_session(address, a, "register") for a in accounts), concurrency
    )
    return accounts, list(conns)


async def befriend(pairs: list[tuple], concurrency: int = 32) -> None:
    """Make each pair friends: one asks, the other accepts.

    Args:
        pairs: ``(conn_a, account_a, conn_b, account_b)`` tuples, both
            connections logged in.
        concurrency: Pairs in progress at once.
    """

    async def one(conn_a, _account_a, conn_b, account_b):
        data = await conn_a.call("send_friend_request", username=account_b["username"])
        request = data["request"]
        if request.get("status") == "pending":
            await conn_b.call(
                "respond_friend_request", request_id=request["id"], accept=True
            )

    await _bounded((one(*pair) for pair in pairs), concurrency)


async def create_group(conn: Connection, name: str, member_ids: list[int]) -> int:
    """Create a group owned by the connection's user.

    Args:
        conn: The owner's logged-in connection.
        name: The group's name.
        member_ids: The other members' user ids.

    Returns:
        The group's id.
    """
    data = await conn.call("create_group", name=name, members=member_ids, timeout=120)
    return data["group"]["id"]


async def close_all(conns: list[Connection]) -> None:
    """Close connections, a few hundred at a time.

    Args:
        conns: The connections.
    """
    for start in range(0, len(conns), 500):
        await asyncio.gather(*(c.close() for c in conns[start : start + 500]))


async def fill_conversation(
    conn: Connection,
    count: int,
    to_user: int | None = None,
    group_id: int | None = None,
    in_flight: int = 16,
    tag: str = "fill",
) -> int:
    """Send ``count`` messages as fast as the server answers.

    Args:
        conn: The sender's logged-in connection.
        count: How many messages.
        to_user: The recipient, for a private conversation.
        group_id: The group, for a group conversation.
        in_flight: Requests outstanding at once.
        tag: Prefix of the client_msg_ids.

    Returns:
        The id of the last message stored.
    """
    target = {"to_user": to_user} if group_id is None else {"group_id": group_id}
    last_id = 0
    sent = 0

    async def lane(lane_index: int):
        nonlocal last_id, sent
        while sent < count:
            sent += 1
            data = await conn.call(
                "send_message",
                content=f"message {sent}",
                client_msg_id=f"{tag}.{lane_index}.{sent}",
                **target,
            )
            last_id = max(last_id, data["message"]["id"])

    await asyncio.gather(*(lane(i) for i in range(in_flight)))
    return last_id

"""Writing messages: the one write path that runs hot, kept apart.

``write_in_one_statement`` is the PostgreSQL write, a single statement per
batch; ``write_script`` is the transaction script the SQLite backend runs.
Both check friendship or membership in the same transaction as the insert,
recognise retries by ``client_msg_id``, and keep the batch's order in ids.
"""

from typing import Any

from chatd.storage.database import Script, Statement
from chatd.storage.records import MessageRecord, NewMessage, WriteResult
from chatd.storage.sql import (
    MESSAGE_FROM,
    group_conversation,
    marks,
    message_row,
    private_conversation,
)


async def write_in_one_statement(db, batch: list[NewMessage]) -> list[WriteResult]:
    """The PostgreSQL write: checks, inserts and reads back in a single
    statement (``_PG_WRITE``), so a batch costs one round trip and one
    commit. The batch travels as one array per column, which keeps the
    statement the same whatever the batch size. Ids are drawn in input
    order from a sorted subquery, so a sender's messages keep the order
    they were sent in; the statement's own INSERT is invisible to its
    SELECT, so ``old`` finds only messages stored before (retries); its LIMIT
    keeps PostgreSQL from turning that look-up into a scan of the whole
    table."""
    first_of: dict[tuple[int, str], int] = {}
    fresh: list[int] = []
    repeats: dict[int, int] = {}
    for index, message in enumerate(batch):
        key = (message.sender_id, message.client_msg_id)
        if message.client_msg_id is not None and key in first_of:
            repeats[index] = first_of[key]
            continue
        if message.client_msg_id is not None:
            first_of[key] = index
        fresh.append(index)

    messages = [batch[index] for index in fresh]
    columns = [
        _int_array(fresh),
        _text_array([_conversation_of(m) for m in messages]),
        _int_array([m.sender_id for m in messages]),
        _int_array([m.to_user_id for m in messages]),
        _int_array([m.group_id for m in messages]),
        _text_array([m.content for m in messages]),
        _int_array([m.sent_at for m in messages]),
        _text_array([m.client_msg_id for m in messages]),
    ]
    rows = await db.run_one("write_messages", Statement(_PG_WRITE, columns))

    results: list[WriteResult | None] = [None] * len(batch)
    members: dict[int, list[int]] = {}
    for row in rows:
        if row[9] is not None:
            members[batch[row[0]].group_id] = row[9]
    for row in rows:
        index, allowed, inserted_id = row[0], row[1], row[2]
        m = batch[index]
        if not allowed:
            results[index] = WriteResult(
                "not_friends" if m.to_user_id else "not_member"
            )
            continue
        if m.group_id:
            recipients = tuple(u for u in members[m.group_id] if u != m.sender_id)
        else:
            recipients = (m.to_user_id,)
        if inserted_id is not None:
            record = MessageRecord(
                inserted_id,
                m.sender_id,
                row[7],
                row[8],
                m.to_user_id,
                m.group_id,
                m.content,
                m.sent_at,
                m.client_msg_id,
            )
            results[index] = WriteResult("created", record, recipients)
        else:
            record = MessageRecord(
                row[3],
                m.sender_id,
                row[7],
                row[8],
                m.to_user_id,
                m.group_id,
                row[4],
                row[5],
                m.client_msg_id,
            )
            results[index] = WriteResult("duplicate", record, recipients)
    for index, first in repeats.items():
        earlier = results[first]
        if earlier.outcome in ("created", "duplicate"):
            earlier = WriteResult("duplicate", earlier.message, earlier.recipients)
        results[index] = earlier
    return results


def write_script(batch: list[NewMessage]) -> Script:
    friends: set[tuple[int, int]] = set()
    pairs = sorted({(m.sender_id, m.to_user_id) for m in batch if m.to_user_id})
    if pairs:
        rows = yield Statement(
            f"""
            SELECT user_id, friend_id FROM friendships
            WHERE (user_id, friend_id) IN (VALUES {marks(len(pairs), 2)})
            """,
            [value for pair in pairs for value in pair],
        )
        friends = set(rows)

    members: dict[int, list[int]] = {}
    group_ids = sorted({m.group_id for m in batch if m.group_id})
    if group_ids:
        rows = yield Statement(
            f"""
            SELECT group_id, user_id FROM group_members
            WHERE group_id IN ({marks(len(group_ids))}) ORDER BY user_id
            """,
            group_ids,
        )
        for group_id, user_id in rows:
            members.setdefault(group_id, []).append(user_id)

    results: list[WriteResult | None] = [None] * len(batch)
    accepted: list[int] = []
    for index, message in enumerate(batch):
        if message.to_user_id and (message.sender_id, message.to_user_id) not in (
            friends
        ):
            results[index] = WriteResult("not_friends")
        elif message.group_id and message.sender_id not in members.get(
            message.group_id, ()
        ):
            results[index] = WriteResult("not_member")
        else:
            accepted.append(index)
    if not accepted:
        return results

    rows = yield Statement(
        f"SELECT id, username, nickname FROM users WHERE id IN "
        f"({marks(len({batch[i].sender_id for i in accepted}))})",
        sorted({batch[i].sender_id for i in accepted}),
    )
    senders = {row[0]: row[1:] for row in rows}
    created = yield from _insert_new(batch, accepted, senders)

    for index in accepted:
        message = batch[index]
        record = created.get(index)
        recipients: tuple[int, ...] = ()
        if message.group_id:
            recipients = tuple(
                u for u in members[message.group_id] if u != message.sender_id
            )
        elif message.to_user_id:
            recipients = (message.to_user_id,)
        if record is not None:
            results[index] = WriteResult("created", record, recipients)
        else:
            results[index] = WriteResult("duplicate", None, recipients)

    duplicates = [i for i in accepted if results[i].outcome == "duplicate"]
    if duplicates:
        stored = yield from _find_by_client_id(batch, duplicates)
        for index in duplicates:
            key = (batch[index].sender_id, batch[index].client_msg_id)
            result = results[index]
            results[index] = WriteResult("duplicate", stored[key], result.recipients)
    return results


_PG_WRITE = """
WITH input AS (
    SELECT * FROM unnest(
        ?::int[], ?::text[], ?::bigint[], ?::bigint[], ?::bigint[], ?::text[],
        ?::bigint[], ?::text[]
    ) AS input (idx, conversation, sender_id, to_user_id, group_id, content,
                sent_at, client_msg_id)
),
allowed AS (
    SELECT i.* FROM input i
    WHERE (i.to_user_id IS NOT NULL AND EXISTS (
               SELECT 1 FROM friendships f
               WHERE f.user_id = i.sender_id AND f.friend_id = i.to_user_id))
       OR (i.group_id IS NOT NULL AND EXISTS (
               SELECT 1 FROM group_members gm
               WHERE gm.group_id = i.group_id AND gm.user_id = i.sender_id))
),
numbered AS (
    SELECT s.idx, nextval(pg_get_serial_sequence('messages', 'id')) AS id
    FROM (SELECT idx FROM allowed ORDER BY idx) AS s
),
inserted AS (
    INSERT INTO messages (id, conversation, sender_id, to_user_id, group_id,
                          content, sent_at, client_msg_id)
    SELECT n.id, a.conversation, a.sender_id, a.to_user_id, a.group_id,
           a.content, a.sent_at, a.client_msg_id
    FROM allowed a JOIN numbered n ON n.idx = a.idx
    ON CONFLICT (sender_id, client_msg_id) DO NOTHING
    RETURNING id
)
SELECT i.idx, a.idx IS NOT NULL, ins.id, old.id, old.content, old.sent_at,
       NULL, u.username, u.nickname,
       CASE WHEN i.group_id IS NOT NULL AND i.idx = (
                SELECT MIN(i2.idx) FROM input i2 WHERE i2.group_id = i.group_id)
            THEN ARRAY(SELECT gm.user_id FROM group_members gm
                       WHERE gm.group_id = i.group_id ORDER BY gm.user_id)
       END
FROM input i
LEFT JOIN users u ON u.id = i.sender_id
LEFT JOIN allowed a ON a.idx = i.idx
LEFT JOIN numbered n ON n.idx = i.idx
LEFT JOIN inserted ins ON ins.id = n.id
LEFT JOIN LATERAL (
    SELECT m.id, m.content, m.sent_at FROM messages m
    WHERE ins.id IS NULL AND a.idx IS NOT NULL
      AND m.sender_id = i.sender_id AND m.client_msg_id = i.client_msg_id
    LIMIT 1
) AS old ON TRUE
ORDER BY i.idx
"""


def _int_array(values: list[int | None]) -> str:
    """A PostgreSQL array literal of integers (None as NULL).

    Building the literal here costs a fraction of psycopg2 adapting each
    element of a list on its own, and it travels as one parameter.
    """
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def _text_array(values: list[str | None]) -> str:
    """A PostgreSQL array literal of texts (None as NULL), every element
    quoted, with backslashes and double quotes escaped."""
    quoted = [
        "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for v in values
    ]
    return "{" + ",".join(quoted) + "}"


def _conversation_of(message: NewMessage) -> str:
    """The conversation key a new message belongs to."""
    if message.group_id:
        return group_conversation(message.group_id)
    return private_conversation(message.sender_id, message.to_user_id)


def _insert_new(batch, accepted, senders) -> Script:
    """Insert the accepted messages not stored before; map index -> record.

    One multi-row INSERT; a retry (same sender and client_msg_id as a stored
    message, or as an earlier one in the batch) is skipped. Ids are given in
    VALUES order, so the returned rows sorted by id line up with the rows
    that were inserted.
    """
    seen: set[tuple[int, str]] = set()
    fresh: list[int] = []
    for index in accepted:
        message = batch[index]
        if message.client_msg_id is not None:
            key = (message.sender_id, message.client_msg_id)
            if key in seen:
                continue
            seen.add(key)
        fresh.append(index)

    params: list[Any] = []
    for index in fresh:
        m = batch[index]
        params += [
            _conversation_of(m),
            m.sender_id,
            m.to_user_id,
            m.group_id,
            m.content,
            m.sent_at,
            m.client_msg_id,
        ]
    rows = yield Statement(
        f"""
        INSERT INTO messages (conversation, sender_id, to_user_id, group_id,
                              content, sent_at, client_msg_id)
        VALUES {marks(len(fresh), 7)}
        ON CONFLICT (sender_id, client_msg_id) DO NOTHING
        RETURNING id, sender_id, client_msg_id
        """,
        params,
    )
    inserted_keys = {(row[1], row[2]) for row in rows if row[2] is not None}
    inserted = [
        i
        for i in fresh
        if batch[i].client_msg_id is None
        or (batch[i].sender_id, batch[i].client_msg_id) in inserted_keys
    ]
    created = {}
    for index, row in zip(inserted, sorted(rows), strict=True):
        m = batch[index]
        username, nickname = senders[m.sender_id]
        created[index] = MessageRecord(
            row[0],
            m.sender_id,
            username,
            nickname,
            m.to_user_id,
            m.group_id,
            m.content,
            m.sent_at,
            m.client_msg_id,
        )
    return created


def _find_by_client_id(batch, indexes) -> Script:
    """Read the stored messages that retries in the batch refer to."""
    keys = sorted({(batch[i].sender_id, batch[i].client_msg_id) for i in indexes})
    rows = yield Statement(
        f"""
        {MESSAGE_FROM}
        WHERE (m.sender_id, m.client_msg_id) IN (VALUES {marks(len(keys), 2)})
        """,
        [value for key in keys for value in key],
    )
    return {(row[1], row[8]): message_row(row) for row in rows}

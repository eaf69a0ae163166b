"""An in-memory relay that speaks chatd's protocol for the benchmarked actions.

No storage, no hashing and no rules: register and login accept anyone,
friendships are implicit, and a message is answered to its sender and
pushed to its recipients' sessions at once.  Whatever chatd spends beyond
this relay is the price of durability and rules.

Actions: register, login, send_message, create_group, ack, ping, and,
with ``--history``, get_history over messages kept in memory.  A message
to a user with no open session waits in memory and is sent as
offline_messages at that user's next login, in batches of 200 that
follow each other on ack, as chatd does.
"""

import bisect
import itertools
from datetime import UTC, datetime

import msgspec
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

from bench.references._serve import parse_args, serve

BACKLOG_BATCH = 200
HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 200

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def _now_iso() -> str:
    """Return the current UTC time as ISO 8601 with milliseconds."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class RelayError(Exception):
    """A request the relay cannot answer; becomes an error reply."""

    def __init__(self, code: str, message: str) -> None:
        """Create the error.

        Args:
            code: The protocol error code.
            message: A human-readable explanation.
        """
        super().__init__(message)
        self.code = code
        self.message = message


class RelayProtocol(WebSocketServerProtocol):
    """One client connection: decodes requests and dispatches them."""

    def onOpen(self) -> None:
        """Start unauthenticated."""
        self.user_id: int | None = None
        self.backlog_waiting = False

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        """Drop this session from the online registry.

        Args:
            wasClean: Whether the close handshake completed.
            code: The close code.
            reason: The close reason.
        """
        user_id = getattr(self, "user_id", None)
        if user_id is not None:
            self.factory.relay.remove_session(user_id, self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """Answer one request frame.

        Args:
            payload: The frame body, one JSON object.
            isBinary: Whether it came as a binary frame.
        """
        request_id = None
        action = None
        try:
            request = _decode(payload)
            if not isinstance(request, dict):
                raise RelayError("bad_request", "a request is a JSON object")
            request_id = request.get("id")
            action = request.get("action")
            data = self.factory.relay.handle(self, action, request)
        except msgspec.DecodeError:
            reply = _error_reply(None, None, "bad_json", "not JSON")
        except RelayError as error:
            reply = _error_reply(request_id, action, error.code, error.message)
        except (KeyError, TypeError, ValueError) as error:
            reply = _error_reply(request_id, action, "bad_request", repr(error))
        else:
            reply = {
                "type": "reply",
                "id": request_id,
                "action": action,
                "ok": True,
                "data": data,
            }
        self.sendMessage(_encode(reply))
        if action is not None:
            self.factory.relay.after_reply(self, action)

    def send_event(self, event: str, data: dict) -> None:
        """Push one event to this session.

        Args:
            event: The event name.
            data: The event's data object.
        """
        self.sendMessage(_encode({"type": "event", "event": event, "data": data}))


def _error_reply(request_id, action, code: str, message: str) -> dict:
    """Build an error reply envelope.

    Args:
        request_id: The request's id, echoed.
        action: The request's action, echoed.
        code: The error code.
        message: The explanation.

    Returns:
        The reply object.
    """
    return {
        "type": "reply",
        "id": request_id,
        "action": action,
        "ok": False,
        "error": {"code": code, "message": message},
    }


class Relay:
    """The relay's whole state, in memory, and its action handlers."""

    def __init__(self, factory: WebSocketServerFactory, keep_history: bool) -> None:
        """Create an empty relay.

        Args:
            factory: The factory, used to prepare fan-out frames.
            keep_history: Keep every message for get_history.
        """
        self.factory = factory
        self.keep_history = keep_history
        self.user_ids: dict[str, int] = {}
        self.users: dict[int, dict] = {}
        self.sessions: dict[int, set[RelayProtocol]] = {}
        self.groups: dict[int, dict] = {}
        self.backlog: dict[int, list[dict]] = {}
        self.history: dict[tuple, list[dict]] = {}
        self.history_ids: dict[tuple, list[int]] = {}
        self._user_seq = itertools.count(1)
        self._group_seq = itertools.count(1)
        self._message_seq = itertools.count(1)
        self._handlers = {
            "register": self.login,
            "login": self.login,
            "send_message": self.send_message,
            "create_group": self.create_group,
            "ack": self.ack,
            "ping": self.ping,
            "get_history": self.get_history,
        }

    def handle(self, session: RelayProtocol, action, request: dict) -> dict:
        """Run the handler of one action.

        Args:
            session: The requesting connection.
            action: The action name.
            request: The whole request object.

        Returns:
            The reply's data object.

        Raises:
            RelayError: The action is unknown or not allowed yet.
        """
        handler = self._handlers.get(action)
        if handler is None:
            raise RelayError("unknown_action", "unknown action")
        if session.user_id is None and action not in ("register", "login"):
            raise RelayError("not_authenticated", "log in first")
        return handler(session, request)

    def after_reply(self, session: RelayProtocol, action: str) -> None:
        """Send what follows a reply: the login events.

        Args:
            session: The connection that was answered.
            action: The action that was answered.
        """
        if action not in ("register", "login") or session.user_id is None:
            return
        user_id = session.user_id
        groups = [g for g in self.groups.values() if user_id in g["member_ids"]]
        session.send_event("friends", {"friends": []})
        session.send_event("groups", {"groups": [self._group_view(g) for g in groups]})
        self._send_backlog(session)

    def remove_session(self, user_id: int, session: RelayProtocol) -> None:
        """Forget a closed session.

        Args:
            user_id: Its user.
            session: The connection.
        """
        sessions = self.sessions.get(user_id)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self.sessions[user_id]

    def login(self, session: RelayProtocol, request: dict) -> dict:
        """Register or log in: anyone, any password, no hashing.

        Args:
            session: The requesting connection.
            request: Holds ``username``.

        Returns:
            ``{user, session_token}``.
        """
        if session.user_id is not None:
            raise RelayError("already_authenticated", "already logged in")
        username = request["username"]
        user_id = self.user_ids.get(username)
        if user_id is None:
            user_id = next(self._user_seq)
            self.user_ids[username] = user_id
            self.users[user_id] = {
                "id": user_id,
                "username": username,
                "nickname": request.get("nickname") or username,
            }
        session.user_id = user_id
        self.sessions.setdefault(user_id, set()).add(session)
        user = dict(self.users[user_id], online=True)
        return {"user": user, "session_token": f"relay-{user_id}"}

    def send_message(self, session: RelayProtocol, request: dict) -> dict:
        """Answer a message and push it to its recipients.

        Args:
            session: The sender's connection.
            request: Holds ``to_user`` or ``group_id``, ``content`` and an
                optional ``client_msg_id``.

        Returns:
            ``{message}``.
        """
        sender_id = session.user_id
        to_user = request.get("to_user")
        group_id = request.get("group_id")
        if group_id is not None:
            group = self.groups.get(group_id)
            if group is None:
                raise RelayError("not_found", "no such group")
            recipients = [m for m in group["member_ids"] if m != sender_id]
            key = ("g", group_id)
        elif to_user is not None:
            if to_user not in self.users:
                raise RelayError("not_found", "no such user")
            recipients = [to_user]
            key = ("u", min(sender_id, to_user), max(sender_id, to_user))
        else:
            raise RelayError("bad_request", "to_user or group_id")

        sender = self.users[sender_id]
        message = {
            "id": next(self._message_seq),
            "sender": {
                "id": sender_id,
                "username": sender["username"],
                "nickname": sender["nickname"],
            },
            "to_user": to_user,
            "group_id": group_id,
            "content": request["content"],
            "sent_at": _now_iso(),
            "client_msg_id": request.get("client_msg_id"),
        }
        if self.keep_history:
            self.history.setdefault(key, []).append(message)
            self.history_ids.setdefault(key, []).append(message["id"])
        self._deliver(session, message, recipients)
        return {"message": message}

    def _deliver(self, session: RelayProtocol, message: dict, recipients) -> None:
        """Push a message to the recipients' and the sender's other sessions.

        The event is encoded and framed once for all recipient sessions.

        Args:
            session: The sender's connection, which gets the reply instead.
            message: The message object.
            recipients: The recipients' user ids.
        """
        targets = []
        for user_id in recipients:
            sessions = self.sessions.get(user_id)
            if sessions:
                targets.extend(sessions)
            else:
                self.backlog.setdefault(user_id, []).append(message)
        if targets:
            event = {"type": "event", "event": "message", "data": {}}
            event["data"] = {"message": message, "direction": "in"}
            prepared = self.factory.prepareMessage(_encode(event))
            for target in targets:
                target.sendPreparedMessage(prepared)

        own = self.sessions.get(session.user_id, ())
        if len(own) > 1:
            out = {"message": message, "direction": "out"}
            for other in own:
                if other is not session:
                    other.send_event("message", out)

    def create_group(self, session: RelayProtocol, request: dict) -> dict:
        """Create a group of the creator and the given members.

        Args:
            session: The creator's connection.
            request: Holds ``name`` and ``members`` (user ids).

        Returns:
            ``{group}``.
        """
        member_ids = [session.user_id]
        for user_id in request["members"]:
            if user_id not in self.users:
                raise RelayError("not_found", "no such user")
            if user_id not in member_ids:
                member_ids.append(user_id)
        group = {
            "id": next(self._group_seq),
            "name": request["name"],
            "owner_id": session.user_id,
            "created_at": _now_iso(),
            "member_ids": member_ids,
        }
        self.groups[group["id"]] = group
        view = self._group_view(group)
        for user_id in member_ids[1:]:
            for target in self.sessions.get(user_id, ()):
                target.send_event("group_added", {"group": view})
        return {"group": view}

    def _group_view(self, group: dict) -> dict:
        """Return a group as the protocol shows it.

        Args:
            group: The relay's group record.

        Returns:
            The group object with its members as user objects.
        """
        members = [
            dict(self.users[m], online=m in self.sessions) for m in group["member_ids"]
        ]
        view = {k: v for k, v in group.items() if k != "member_ids"}
        view["members"] = members
        return view

    def ack(self, session: RelayProtocol, request: dict) -> dict:
        """Drop acknowledged backlog; send the next batch if one was awaited.

        Args:
            session: The acknowledging connection.
            request: Holds ``up_to``.

        Returns:
            ``{delivered_up_to}``.
        """
        up_to = request["up_to"]
        pending = self.backlog.get(session.user_id)
        if pending:
            keep = [m for m in pending if m["id"] > up_to]
            if keep:
                self.backlog[session.user_id] = keep
            else:
                del self.backlog[session.user_id]
        if session.backlog_waiting:
            session.backlog_waiting = False
            self.factory.reactor.callLater(0, self._send_backlog, session)
        return {"delivered_up_to": up_to}

    def _send_backlog(self, session: RelayProtocol) -> None:
        """Send the session's next batch of backlog.

        Args:
            session: The connection to send it to.
        """
        pending = self.backlog.get(session.user_id, [])
        batch = pending[:BACKLOG_BATCH]
        has_more = len(pending) > BACKLOG_BATCH
        session.backlog_waiting = has_more
        session.send_event(
            "offline_messages", {"messages": batch, "has_more": has_more}
        )

    def ping(self, session: RelayProtocol, request: dict) -> dict:
        """Answer a ping.

        Args:
            session: The requesting connection.
            request: Unused.

        Returns:
            An empty object.
        """
        return {}

    def get_history(self, session: RelayProtocol, request: dict) -> dict:
        """Return a page of a conversation kept in memory.

        Args:
            session: The requesting connection.
            request: Holds ``with_user`` or ``group_id``, and optional
                ``before_id`` and ``limit``.

        Returns:
            ``{messages, has_more}``, oldest to newest.
        """
        if not self.keep_history:
            raise RelayError("unknown_action", "start the relay with --history")
        if request.get("group_id") is not None:
            key = ("g", request["group_id"])
        else:
            other = request["with_user"]
            key = ("u", min(session.user_id, other), max(session.user_id, other))
        limit = min(
            int(request.get("limit") or HISTORY_DEFAULT_LIMIT), HISTORY_MAX_LIMIT
        )
        ids = self.history_ids.get(key, [])
        before_id = request.get("before_id")
        end = len(ids) if before_id is None else bisect.bisect_left(ids, before_id)
        start = max(0, end - limit)
        return {"messages": self.history.get(key, [])[start:end], "has_more": start > 0}


class RelayFactory(WebSocketServerFactory):
    """Factory holding the relay's state."""

    protocol = RelayProtocol

    def __init__(self, *, reactor, args) -> None:
        """Create the factory.

        Args:
            reactor: The reactor to run on.
            args: The parsed command line (``history``).
        """
        super().__init__(reactor=reactor)
        self.relay = Relay(self, keep_history=args.history)


def main(argv: list[str] | None = None) -> None:
    """Run the relay.

    Args:
        argv: Command-line arguments, or None for ``sys.argv``.
    """
    serve(RelayFactory, parse_args("In-memory relay speaking chatd's protocol.", argv))


if __name__ == "__main__":
    main()

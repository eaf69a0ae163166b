"""Input fuzzing: random and mutated frames against a live daemon.

The daemon runs in the test's reactor; hypothesis runs in a worker thread
and speaks to it over loopback with the synchronous ``websockets`` client,
so that hypothesis can drive (and shrink) examples normally. Every frame
must get well-formed replies (the envelope of docs/protocol.md) or a clean
close with 1007 or 1009; a second client pings after every example; and the
daemon must still serve a new user at the end.
"""

import itertools
import json
import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet import threads
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from chatd import wire
from chatd.errors import ErrorCode
from chatd.wire import ACTIONS
from tests.support import ChatTestCase

CODES = {str(code) for code in ErrorCode}
#: Close codes that count as clean: bad UTF-8 (1007), frame too big (1009).
CLEAN_CLOSES = {1007, 1009}
TIMEOUT = 10.0
_SURROGATES = ["\\ud800", "\\udfff", "\\udbff\\u0041", "\\udc00\\ud800"]

_MAX = 2**63

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([_MAX, _MAX - 1, -_MAX, 10**30, -(10**400), 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.text(
        alphabet=st.sampled_from("\x00\x01\x1f\x7f\u200b\ufeff\u202e a"), max_size=20
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(max_size=12), inner, max_size=5),
    ),
    max_leaves=20,
)

#: A valid example of every action's parameters (ids of the fuzz world).
TEMPLATES = {
    "register": {"username": "fuzzed", "password": "12345678", "nickname": "n"},
    "login": {"username": "observer", "password": "correct horse"},
    "resume": {"session_token": "x" * 43},
    "logout": {},
    "change_password": {"old_password": "wrong!!!", "new_password": "12345678"},
    "send_message": {"to_user": 1, "content": "hello", "client_msg_id": "c"},
    "ack": {"up_to": 1},
    "get_history": {"with_user": 1, "limit": 10},
    "create_group": {"name": "g", "members": [1]},
    "get_groups": {},
    "get_group_members": {"group_id": 1},
    "leave_group": {"group_id": 1},
    "send_friend_request": {"username": "observer"},
    "respond_friend_request": {"request_id": 1, "accept": True},
    "get_pending_requests": {},
    "get_friends": {},
    "remove_friend": {"user_id": 1},
    "update_nickname": {"nickname": "nick"},
    "get_online_users": {},
    "ping": {},
}
assert set(TEMPLATES) == set(ACTIONS)
FIELDS = sorted({name for params in TEMPLATES.values() for name in params})


@st.composite
def mutated_requests(draw) -> dict:
    """A valid request with some fields replaced, dropped or added."""
    action = draw(st.sampled_from(sorted(TEMPLATES)))
    body = {"action": action, **TEMPLATES[action]}
    if draw(st.booleans()):
        body["id"] = draw(json_values)
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(["action", "id", *FIELDS, "extra"]))
        change = draw(st.sampled_from(["replace", "drop", "add"]))
        if change == "drop":
            body.pop(field, None)
        else:
            body[field] = draw(json_values)
    return body


def _text(payload: str) -> tuple[bytes, bool]:
    return payload.encode("utf-8"), True


@st.composite
def frames(draw) -> tuple[str, bytes, bool]:
    """(kind, payload, is_text) of one hostile frame."""
    kind = draw(
        st.sampled_from(
            [
                "json",
                "mutated",
                "surrogate",
                "duplicate",
                "nested",
                "huge",
                "binary",
                "bad_utf8",
                "garbage",
            ]
        )
    )
    if kind == "json":
        value = draw(json_values)
        return (kind, *_text(json.dumps(value, ensure_ascii=draw(st.booleans()))))
    if kind == "mutated":
        return (kind, *_text(json.dumps(draw(mutated_requests()))))
    if kind == "surrogate":
        body = json.dumps(draw(mutated_requests()))
        field = draw(st.sampled_from(FIELDS + ["action", "id"]))
        escape = draw(st.sampled_from(_SURROGATES))
        spliced = body[:-1] + f', "{field}": "a{escape}b"}}'
        return (kind, *_text(spliced))
    if kind == "duplicate":
        first, second = draw(mutated_requests()), draw(mutated_requests())
        inner = json.dumps(first)[1:-1] + ", " + json.dumps(second)[1:-1]
        return (kind, *_text("{" + inner.strip(", ") + "}"))
    if kind == "nested":
        depth = draw(st.integers(1, 30000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        body = opener * depth + "1" + closer * depth
        where = draw(st.sampled_from(["whole", "field"]))
        if where == "field":
            body = '{"action": "send_message", "content": ' + body + "}"
        return (kind, *_text(body))
    if kind == "huge":
        size = draw(st.sampled_from([60_000, 100_000, 1_000_000]))
        field = draw(st.sampled_from(["content", "username", "pad"]))
        body = json.dumps({"action": "send_message", "to_user": 1, field: "x" * size})
        return (kind, *_text(body))
    if kind == "binary":
        return (kind, draw(st.binary(max_size=200)), False)
    if kind == "bad_utf8":
        prefix = draw(st.sampled_from([b'{"action": "ping", "x": "', b"", b'{"a']))
        junk = draw(
            st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82"])
        )
        return (kind, prefix + junk + b'"}', True)
    raw = draw(st.binary(max_size=200))
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raw = raw.decode("utf-8", "replace").encode("utf-8")
    return ("garbage", raw, True)


def check_envelope(frame: dict) -> None:
    """Assert that one frame from the server is a well-formed reply or event."""
    assert isinstance(frame, dict), frame
    if frame.get("type") == "event":
        assert set(frame) == {"type", "event", "data"}, frame
        assert isinstance(frame["event"], str) and isinstance(frame["data"], dict)
        return
    assert frame.get("type") == "reply", frame
    assert frame["action"] is None or frame["action"] in ACTIONS, frame
    request_id = frame["id"]
    assert request_id is None or isinstance(request_id, str | int), frame
    assert not isinstance(request_id, bool), frame
    if frame["ok"] is True:
        assert set(frame) == {"type", "id", "action", "ok", "data"}, frame
        assert isinstance(frame["data"], dict), frame
    else:
        assert frame["ok"] is False and set(frame) == {
            "type",
            "id",
            "action",
            "ok",
            "error",
        }, frame
        error = frame["error"]
        assert error["code"] in CODES, frame
        assert error["code"] != "internal_error", frame
        assert isinstance(error["message"], str), frame


class Harness:
    """Two synchronous clients: the fuzzer (reconnected after each close)
    and an observer that must keep getting answers."""

    def __init__(self, port: int):
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.counter = itertools.count(1)
        self.outcomes: dict[str, dict[str, int]] = {}
        self.observer = self._open("observer")
        self.fuzzer = self._open(None)

    def _open(self, username: str | None):
        ws = connect(self.url, max_size=None, open_timeout=TIMEOUT)
        username = username or f"fuzz{next(self.counter)}"
        self._call(ws, "register", username=username, password="correct horse")
        return ws

    def _call(self, ws, action: str, **params) -> dict:
        tag = f"sync-{next(self.counter)}"
        ws.send(json.dumps({"action": action, "id": tag, **params}))
        while True:
            frame = json.loads(ws.recv(timeout=TIMEOUT))
            check_envelope(frame)
            if frame["type"] == "reply" and frame["id"] == tag:
                assert frame["ok"], frame
                return frame["data"]

    def close(self) -> None:
        for ws in (self.fuzzer, self.observer):
            ws.close()

    def check(self, kind: str, payload: bytes, is_text: bool) -> None:
        """Send one frame, then a ping; everything before the ping's reply
        must be well-formed and hold exactly one other reply."""
        ws = self.fuzzer
        tag = f"sync-{next(self.counter)}"
        try:
            ws.send(payload, text=is_text)
            ws.send(json.dumps({"action": "ping", "id": tag}))
            replies = 0
            while True:
                frame = json.loads(ws.recv(timeout=TIMEOUT))
                check_envelope(frame)
                if frame["type"] != "reply":
                    continue
                if frame["id"] == tag and frame["action"] == "ping":
                    break
                replies += 1
            assert replies == 1, f"{replies} replies to one frame"
            outcome = "answered"
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            assert code in CLEAN_CLOSES, f"closed with {code}"
            outcome = f"closed {code}"
            self.fuzzer = self._open(None)
        per_kind = self.outcomes.setdefault(kind, {})
        per_kind[outcome] = per_kind.get(outcome, 0) + 1
        self._call(self.observer, "ping")


def run_property(port: int) -> dict:
    """Run the hypothesis property in this (worker) thread."""
    harness = Harness(port)

    @settings(
        max_examples=int(os.environ.get("CHATD_FUZZ_EXAMPLES", "150")),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(frames())
    # Regressions: frames that once crashed the request loop.
    @example(("json", b'{"action": ["login"], "id": 1}', True))
    @example(("json", b'{"id": 1, "action": {"a": 1}}', True))
    def every_frame_answered_or_closed_cleanly(frame):
        harness.check(*frame)

    try:
        every_frame_answered_or_closed_cleanly()
    finally:
        harness.close()
    return harness.outcomes


class FuzzTests(ChatTestCase):
    """Hostile frames against the live daemon (SQLite)."""

    async def test_hostile_frames(self):
        """Random and mutated frames each get exactly one well-formed reply
        or a clean close; another client keeps being answered; the daemon
        serves a new user afterwards."""
        await self.start()
        outcomes = await threads.deferToThread(run_property, self.port)
        if os.environ.get("CHATD_FUZZ_REPORT"):
            print(json.dumps(outcomes, indent=1, sort_keys=True))
        self.assertGreater(sum(sum(v.values()) for v in outcomes.values()), 100)

        client = await self.connect()
        await client.call("register", username="afterwards", password="12345678")
        await client.sync()


class UnhashableActionTests(ChatTestCase):
    """Regression: an ``action`` that is a JSON array or object made the
    echo lookup raise TypeError, which killed the request loop and dropped
    the connection without a reply."""

    def test_echo_of_unhashable_action(self):
        """The id is still echoed; the action is not."""
        self.assertEqual(wire.echo_of(b'{"action": ["login"], "id": 3}'), (3, None))
        self.assertEqual(wire.echo_of(b'{"action": {"a": 1}, "id": "x"}'), ("x", None))

    async def test_live_reply_and_connection_survives(self):
        """The frame is answered bad_request and the connection goes on."""
        await self.start()
        client = await self.connect()
        reply = await client.request(["login"])
        self.assertFalse(reply["ok"])
        self.assertIsNone(reply["action"])
        await client.sync()

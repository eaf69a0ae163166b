"""Decoding requests and encoding replies; the generated JSON Schema."""

from pathlib import Path

import msgspec
from twisted.trial import unittest

from chatd import protocol_schema, wire
from chatd.errors import ChatError, ErrorCode

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "protocol.schema.json"


class DecodeTests(unittest.TestCase):
    """Every way a frame can fail, and what the error says."""

    def failure(self, payload: bytes) -> wire.DecodeFailure:
        with self.assertRaises(wire.DecodeFailure) as caught:
            wire.decode_request(payload)
        return caught.exception

    def test_valid_request(self):
        """A well-formed frame becomes its struct, id included."""
        request = wire.decode_request(
            b'{"action": "send_message", "id": "a1", "to_user": 2, "content": "hi"}'
        )
        self.assertIsInstance(request, wire.SendMessage)
        self.assertEqual(
            (request.id, request.to_user, request.content), ("a1", 2, "hi")
        )
        self.assertEqual(wire.action_of(request), "send_message")

    def test_bad_json(self):
        """Malformed JSON, lone surrogates and deep nesting are bad_json."""
        nested = b'{"action": "ping", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}"
        for payload in (b"{", b"\xff", b'{"action": "ping", "x": "\\udc00"}', nested):
            failure = self.failure(payload)
            self.assertEqual(failure.error.code, ErrorCode.BAD_JSON)
            self.assertIsNone(failure.request_id)

    def test_wrong_type_names_field_and_echoes(self):
        """A wrong type is bad_request naming the field; id and action echo."""
        failure = self.failure(b'{"action": "ack", "id": 7, "up_to": "x"}')
        self.assertEqual(failure.error.code, ErrorCode.BAD_REQUEST)
        self.assertEqual(failure.error.field, "up_to")
        self.assertEqual((failure.request_id, failure.action), (7, "ack"))

    def test_nested_field_path(self):
        """A bad list item is named with its index."""
        failure = self.failure(
            b'{"action": "create_group", "name": "g", "members": [1, "x"]}'
        )
        self.assertEqual(failure.error.field, "members[1]")

    def test_missing_field(self):
        """A missing field is named."""
        failure = self.failure(b'{"action": "login", "username": "a"}')
        self.assertEqual(failure.error.field, "password")
        self.assertIn("missing", failure.error.message)

    def test_unknown_and_missing_action(self):
        """An unknown action is unknown_action; none at all is bad_request."""
        self.assertEqual(
            self.failure(b'{"action": "fly"}').error.code, ErrorCode.UNKNOWN_ACTION
        )
        missing = self.failure(b'{"id": 1}')
        self.assertEqual(
            (missing.error.code, missing.error.field), ("bad_request", "action")
        )
        self.assertEqual(missing.request_id, 1)

    def test_out_of_range_numbers(self):
        """Ids beyond 64 bits and non-positive ids are refused."""
        for payload in (
            b'{"action": "ack", "up_to": 123456789012345678901234567890}',
            b'{"action": "get_group_members", "group_id": 0}',
            b'{"action": "get_group_members", "group_id": 1e400}',
        ):
            self.assertEqual(self.failure(payload).error.code, ErrorCode.BAD_REQUEST)

    def test_bad_request_id_is_not_echoed(self):
        """An id that is neither a string nor an integer is refused and not
        echoed."""
        failure = self.failure(b'{"action": "ping", "id": {"x": 1}}')
        self.assertEqual(failure.error.field, "id")
        self.assertIsNone(failure.request_id)

    def test_overlong_string_id_is_not_echoed(self):
        """A string id past 128 characters is refused and not echoed."""
        failure = self.failure(b'{"action": "ping", "id": "' + b"i" * 129 + b'"}')
        self.assertEqual(failure.error.field, "id")
        self.assertIsNone(failure.request_id)

    def test_every_action_has_a_struct(self):
        """The action names are exactly the documented ones."""
        self.assertIn("send_message", wire.ACTIONS)
        self.assertEqual(len(wire.ACTIONS), len(wire.REQUEST_TYPES))


class EncodeTests(unittest.TestCase):
    """The reply and event envelopes."""

    def test_envelopes(self):
        """Replies and events have exactly the documented keys."""
        ok = msgspec.json.decode(wire.reply_ok(3, "ping", {}))
        self.assertEqual(
            ok, {"type": "reply", "id": 3, "action": "ping", "ok": True, "data": {}}
        )
        error = ChatError(ErrorCode.NOT_FOUND, "no such user", field="to_user")
        failed = msgspec.json.decode(wire.reply_error(None, None, error))
        self.assertEqual(
            failed["error"],
            {"code": "not_found", "message": "no such user", "field": "to_user"},
        )
        event = msgspec.json.decode(wire.event("presence", {"user_id": 1}))
        self.assertEqual(
            event, {"type": "event", "event": "presence", "data": {"user_id": 1}}
        )


class SchemaTests(unittest.TestCase):
    """docs/protocol.schema.json is generated from the wire types."""

    def test_checked_in_schema_is_current(self):
        """The file matches what chatd.protocol_schema generates now."""
        self.assertEqual(
            SCHEMA.read_text(encoding="utf-8"),
            protocol_schema.render(),
            "run: python -m chatd.protocol_schema docs/protocol.schema.json",
        )

    def test_schema_lists_every_action(self):
        """Every request struct is a branch of the schema."""
        schema = protocol_schema.build_schema()
        branches = {ref["$ref"].rsplit("/", 1)[1] for ref in schema["anyOf"]}
        self.assertEqual(branches, {t.__name__ for t in wire.REQUEST_TYPES})

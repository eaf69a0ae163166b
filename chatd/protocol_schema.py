"""Generate docs/protocol.schema.json from the wire types.

Run ``python -m chatd.protocol_schema docs/protocol.schema.json`` after
changing chatd/wire.py or chatd/views.py; a test fails while the checked-in
file is stale.
"""

import json
import sys

import msgspec

from chatd import wire
from chatd.views import FriendRequestView, GroupView, MessageView, UserView


def build_schema() -> dict:
    """The JSON Schema of every request, and of the objects replies carry."""
    objects = (UserView, MessageView, GroupView, FriendRequestView)
    (request, *_), components = msgspec.json.schema_components(
        (wire.AnyRequest, *objects), ref_template="#/$defs/{name}"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "chatd protocol requests",
        "description": (
            "A request frame sent to chatd over WebSocket at /ws. The objects "
            "that replies and events carry are under $defs (UserView, "
            "MessageView, GroupView, FriendRequestView). Generated from "
            "chatd/wire.py; see docs/protocol.md."
        ),
        **request,
        "$defs": components,
    }


def render() -> str:
    """The schema as the checked-in file holds it."""
    return json.dumps(build_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    """Write the schema to the path given, or to standard output."""
    text = render()
    if len(argv) > 1:
        with open(argv[1], "w", encoding="utf-8") as output:
            output.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

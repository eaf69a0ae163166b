"""The messaging worker: senders and recipients of send_message, in phases.

Each member of the spec logs in on its own connection.  Senders send
``send_message`` either closed-loop (``in_flight`` outstanding each, the
next one sent on each reply) or paced at a fixed total rate.  Each message
carries its send time (CLOCK_MONOTONIC, system-wide on Linux) in its
client_msg_id, so the recipient, in whatever process, measures the delay
from send to the ``message`` event.
"""

import asyncio
import itertools
import time

import msgspec

from bench.loadgen import accounts
from bench.loadgen.client import Connection
from bench.loadgen.meter import OwnWindow

_decode = msgspec.json.decode
_encode = msgspec.json.encode
_CMID_KEY = b'"client_msg_id"'
CONTENT = "hello from the benchmark"


def send_time_from_cmid(client_msg_id) -> int | None:
    """Return the send time encoded in a benchmark client_msg_id.

    Args:
        client_msg_id: ``"<tag>.<seq>.<send_ns>"`` or anything else.

    Returns:
        The send time in monotonic nanoseconds, or None.
    """
    if not isinstance(client_msg_id, str):
        return None
    _head, _sep, tail = client_msg_id.rpartition(".")
    return int(tail) if tail.isdigit() else None


def send_time_from_frame(payload: bytes) -> int | None:
    """Find the send time in a raw ``message`` event without decoding it all.

    Args:
        payload: The event frame.

    Returns:
        The send time, or None if the frame carries none.
    """
    at = payload.find(_CMID_KEY)
    if at < 0:
        return None
    start = payload.find(b'"', at + len(_CMID_KEY)) + 1
    end = payload.find(b'"', start)
    if start <= 0 or end < 0:
        return None
    _head, _sep, tail = payload[start:end].rpartition(b".")
    return int(tail) if tail.isdigit() else None


class Member:
    """One logged-in member: maybe a sender, always a recipient."""

    def __init__(self, worker: "ChatWorker", conn: Connection, spec: dict) -> None:
        """Wire the connection's handlers.

        Args:
            worker: The worker this member belongs to.
            conn: Its logged-in connection.
            spec: ``target`` (send_message's to_user or group_id, or None
                for a pure recipient), ``slow`` and ``measure``.
        """
        self.worker = worker
        self.conn = conn
        self.target = spec.get("target")
        self.slow = spec.get("slow", False)
        self.measure = spec.get("measure", True) and not self.slow
        self.in_flight = 0
        self.max_seen_id = 0
        self.unacked = 0
        if worker.raw_receive and self.target is None:
            conn.on_frame = self.on_frame
        else:
            conn.on_event = self.on_event

    def send(self) -> None:
        """Send one message to this member's target."""
        worker = self.worker
        send_ns = time.monotonic_ns()
        params = dict(self.target)
        params["content"] = CONTENT
        params["client_msg_id"] = f"{worker.tag}.{next(worker.seq)}.{send_ns}"
        self.in_flight += 1
        worker.phase["sent"] += 1
        self.conn.send_request("send_message", params, self.on_reply)

    def on_reply(self, reply: dict, received_ns: int) -> None:
        """Count a send_message reply and, closed-loop, send the next.

        Args:
            reply: The reply frame.
            received_ns: Its arrival time.
        """
        self.in_flight -= 1
        worker = self.worker
        phase = worker.phase
        if not reply.get("ok"):
            phase["errors"] += 1
            code = (reply.get("error") or {}).get("code")
            phase["error_codes"][code] = phase["error_codes"].get(code, 0) + 1
        elif worker.window_start <= received_ns <= worker.window_end:
            phase["committed"] += 1
        if worker.closed_loop and received_ns < worker.window_end:
            self.send()

    def _record(self, send_ns: int | None, received_ns: int) -> None:
        """Count one delivery and its latency.

        Args:
            send_ns: When it was sent, if known.
            received_ns: When it arrived.
        """
        worker = self.worker
        if worker.window_start <= received_ns <= worker.window_end:
            worker.phase["delivered"] += 1
        if (
            self.measure
            and send_ns is not None
            and worker.window_start <= send_ns <= worker.window_end
        ):
            worker.latencies.append(received_ns - send_ns)
            if worker.keep_send_times:
                worker.send_times.append(send_ns)

    def on_event(self, frame: dict, received_ns: int) -> None:
        """Handle one decoded event; acknowledge messages now and then.

        Args:
            frame: The event frame.
            received_ns: Its arrival time.
        """
        if frame.get("event") != "message":
            return
        data = frame.get("data") or {}
        if data.get("direction") != "in":
            return
        message = data.get("message") or {}
        self._record(send_time_from_cmid(message.get("client_msg_id")), received_ns)
        message_id = message.get("id") or 0
        if message_id > self.max_seen_id:
            self.max_seen_id = message_id
        self.unacked += 1
        if self.unacked >= self.worker.ack_every:
            self.ack()

    def on_frame(self, payload: bytes, received_ns: int) -> None:
        """Handle one raw frame of a pure recipient, decoding little.

        Args:
            payload: The frame.
            received_ns: Its arrival time.
        """
        if b'"message"' in payload and b'"direction":"out"' not in payload:
            self._record(send_time_from_frame(payload), received_ns)

    def ack(self) -> None:
        """Acknowledge everything received so far."""
        if self.max_seen_id and not self.conn.closed.done():
            self.unacked = 0
            self.conn.send_request("ack", {"up_to": self.max_seen_id}, _ignore)


def _ignore(_reply: dict, _received_ns: int) -> None:
    """Drop a reply nobody waits for."""


class ChatWorker:
    """One process's members and the state of the phase they run."""

    def __init__(self, spec: dict) -> None:
        """Read the spec.

        Args:
            spec: ``address``, ``members`` (each with ``account``,
                ``target``, ``slow``), ``tag``, ``raw_receive``,
                ``in_flight``, ``ack_every`` and ``keep_send_times`` (report
                each latency's send time too).
        """
        self.spec = spec
        self.tag = spec["tag"]
        self.raw_receive = spec.get("raw_receive", False)
        self.in_flight = spec.get("in_flight", 16)
        self.ack_every = spec.get("ack_every", 64)
        self.seq = itertools.count(1)
        self.members: list[Member] = []
        self.window_start = 0
        self.window_end = 0
        self.closed_loop = False
        self.phase: dict = {}
        self.latencies: list[int] = []
        self.keep_send_times = spec.get("keep_send_times", False)
        self.send_times: list[int] = []

    async def log_in(self) -> None:
        """Log every member in, a few dozen at a time."""
        address = self.spec["address"]
        semaphore = asyncio.Semaphore(32)

        async def one(member_spec):
            async with semaphore:
                rcvbuf = 4096 if member_spec.get("slow") else None
                conn = await accounts.open_session(
                    address, dict(member_spec["account"]), rcvbuf=rcvbuf
                )
                return Member(self, conn, member_spec)

        self.members = list(
            await asyncio.gather(*(one(m) for m in self.spec["members"]))
        )

    async def run_phase(self, go: dict) -> dict:
        """Run one load phase and report what was measured.

        Args:
            go: ``start_ns``, ``window_start_ns``, ``window_end_ns``,
                ``rate`` (messages per second for this worker, or None for
                closed loop), ``pause_slow`` and ``drain_s``.

        Returns:
            Counts, latencies (ns) and this process's CPU in the window.
        """
        loop = asyncio.get_running_loop()
        self.window_start = go["window_start_ns"]
        self.window_end = go["window_end_ns"]
        self.closed_loop = go.get("rate") is None
        self.latencies = []
        self.send_times = []
        self.phase = {
            "sent": 0,
            "committed": 0,
            "delivered": 0,
            "errors": 0,
            "error_codes": {},
            "skipped": 0,
        }
        cpu = OwnWindow(self.window_start, self.window_end)
        senders = [m for m in self.members if m.target is not None]
        if go.get("pause_slow"):
            for member in self.members:
                if member.slow:
                    member.conn.pause_reading()

        await asyncio.sleep(max(0.0, go["start_ns"] / 1e9 - loop.time()))
        if self.closed_loop:
            for member in senders:
                for _ in range(self.in_flight):
                    member.send()
        else:
            await self._paced(senders, go["rate"])
        await self._drain(senders, go.get("drain_s", 2.0))

        if go.get("pause_slow"):
            for member in self.members:
                if member.slow and member.conn._transport is not None:
                    member.conn._transport.resume_reading()
        for member in self.members:
            if member.target is None or not self.raw_receive:
                member.ack()
        await asyncio.sleep(0.2)

        result = dict(self.phase)
        result["latencies"] = self.latencies
        result["send_times"] = self.send_times
        result["cpu_s"] = cpu.cpu_s
        result["closed_by_server"] = sum(
            1 for m in self.members if m.conn.closed.done()
        )
        result["close_codes"] = sorted(
            {m.conn.close_code for m in self.members if m.conn.closed.done()},
            key=str,
        )
        return result

    async def _paced(self, senders: list[Member], rate: float) -> None:
        """Send at ``rate`` messages per second until the window ends.

        A message that would exceed a sender's in-flight cap is skipped
        (counted, not queued), so that the offered load stays open-loop.

        Args:
            senders: The sending members.
            rate: Messages per second over all of them.
        """
        if not senders or rate <= 0:
            await asyncio.sleep(max(0.0, self.window_end / 1e9 - time.monotonic()))
            return
        start = time.monotonic_ns()
        issued = 0
        turn = itertools.cycle(senders)
        while True:
            now = time.monotonic_ns()
            if now >= self.window_end:
                return
            due = int(rate * (now - start) / 1e9) - issued
            for _ in range(due):
                issued += 1
                member = next(turn)
                if member.in_flight < self.in_flight and not member.conn.closed.done():
                    member.send()
                else:
                    self.phase["skipped"] += 1
            await asyncio.sleep(0.002)

    async def _drain(self, senders: list[Member], drain_s: float) -> None:
        """Wait for the window to end and the outstanding replies to arrive.

        Args:
            senders: The sending members.
            drain_s: Seconds to wait after the window at most.
        """
        await asyncio.sleep(max(0.0, self.window_end / 1e9 - time.monotonic()))
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            if all(m.in_flight <= 0 or m.conn.closed.done() for m in senders):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(min(0.5, drain_s))

    async def close(self) -> None:
        """Close every member's connection."""
        await accounts.close_all([m.conn for m in self.members])


async def worker(spec: dict, control) -> dict:
    """Worker entry point: log in, then run phases until told to stop.

    Args:
        spec: See ChatWorker.
        control: The barrier.

    Returns:
        An empty dict (phase results travel with the barriers).
    """
    chat = ChatWorker(spec)
    await chat.log_in()
    result = None
    while True:
        go = await control.ready(result)
        if go.get("phase") == "stop":
            break
        result = await chat.run_phase(go)
    await chat.close()
    return {}

"""Server-sent events decoding, sans I/O.

Feeds on raw bytes in whatever pieces the network delivers and yields complete events.
Handles LF, CRLF and CR line endings (also split across pieces), a UTF-8 byte-order
mark at the start, DashScope's ``:HTTP_STATUS/NNN`` comment line, and multi-line data.
The way the input is cut into pieces never changes the result.
"""

from __future__ import annotations

from dataclasses import dataclass

_BOM = b"\xef\xbb\xbf"
_STATUS_PREFIX = b":HTTP_STATUS/"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type, its data (lines joined by LF) and the status comment."""

    event: str
    data: bytes
    status: int | None = None
    id: str | None = None


class SSEDecoder:
    """Incremental SSE decoder.

    ``feed`` returns the events completed by a piece of input; ``close`` returns an event
    whose blank line never came (lenient: only when its last line was complete) and
    reports through :attr:`truncated` whether the input stopped in the middle of a line.
    """

    __slots__ = (
        "_buf",
        "_data",
        "_event",
        "_head",
        "_id",
        "_pending_cr",
        "_status",
        "truncated",
    )

    def __init__(self) -> None:
        self._buf = b""
        self._head: bytes | None = b""  # bytes kept until the BOM check is done
        self._pending_cr = False
        self._event: str | None = None
        self._data: list[bytes] = []
        self._status: int | None = None
        self._id: str | None = None
        self.truncated = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode a piece of the stream."""
        if self._head is not None:
            head = self._head + chunk
            if len(head) < 3 and _BOM.startswith(head):
                self._head = head
                return []
            self._head = None
            chunk = head[3:] if head.startswith(_BOM) else head
        if not chunk:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._pending_cr = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf + chunk if self._buf else chunk
        if b"\n" not in buf:
            self._buf = buf
            return []
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        events: list[SSEEvent] = []
        for line in lines:
            self._line(line, events)
        return events

    def close(self) -> list[SSEEvent]:
        """End of input: flush what can be flushed."""
        events: list[SSEEvent] = []
        if self._head:
            # the whole stream was shorter than a BOM
            self._buf, self._head = self._head, None
        if self._buf:
            self.truncated = True
            self._buf = b""
            self._reset()
            return events
        if self._data:
            self._dispatch(events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                self._dispatch(events)
            else:
                self._reset()
            return
        if line[:1] == b":":
            if line.startswith(_STATUS_PREFIX):
                try:
                    self._status = int(line[len(_STATUS_PREFIX) :].strip())
                except ValueError:
                    self._status = None
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", errors="replace")
        elif name == b"id":
            self._id = value.decode("utf-8", errors="replace")
        # "retry" and unknown fields are ignored, as the SSE specification says

    def _dispatch(self, events: list[SSEEvent]) -> None:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        events.append(SSEEvent(self._event or "message", data, self._status, self._id))
        self._reset()

    def _reset(self) -> None:
        self._event = None
        self._data = []
        self._status = None
        self._id = None

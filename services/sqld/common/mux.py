"""Many streams on one gRPC stream: the internal hops (edge -> scheduler, scheduler -> storage).

Why: in Python a gRPC message costs hundreds of microseconds of CPU whatever its size, so with a
stream per session every statement pays that at every hop. Here all the sessions of a service
pair share one stream (the `Multiplex` methods, query.proto and storage.proto), and whatever the
sessions have ready in one event-loop turn goes out as one message of frames.

One side of a multiplexed stream (`_Link`) has:
- a `_Stream` per session: the messages received and not yet taken (the inbox), and the
  messages waiting to go (the outbox, at most QUEUED before `write` waits);
- per-stream flow control: a side sends at most WINDOW messages beyond what the other side
  acknowledged (`credit`: messages it has taken). Credit rides on the stream's next frame, or
  goes on its own once WINDOW/2 is owed. So a session whose reader is slow holds at most WINDOW
  messages on the far side and stalls only itself, and the shared stream is always read;
- one sender task writing batches: round-robin over the streams with something to send, one
  frame per stream per round, up to BATCH_BYTES. A large result thus goes out a part at a time
  between the small answers of other sessions, and a session pipelining thousands of
  statements sends one at a time between the others (fairness).

Server: `serve(context, handler, ...)` runs the service's one-stream handler (Session, Connect)
per stream, with a context that has the methods those handlers use (read, write, abort,
invocation_metadata, peer): the handlers are the same code for both RPCs.
Client: `Channel(...).stream()` gives a `Stream` with the methods of a grpc.aio stream-stream
call the callers use (write, read, done_writing, cancel, done); a failure is a
grpc.aio.AioRpcError, as on a call of its own. When the shared stream breaks, every stream on it
fails with its status; the next `stream()` opens a new shared stream.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc

from sqld.v1 import common_pb2

log = logging.getLogger(__name__)

WINDOW = 4                # messages of a stream sent beyond the receiver's credit
QUEUED = 1                # messages of a stream waiting for the sender before `write` waits
BATCH_BYTES = 1 << 20     # a batch stops growing past this (its first message always goes)
OK = grpc.StatusCode.OK
_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}

_MESSAGE, _END, _CANCEL = 0, 1, 2  # outbox item kinds


class _End:
    """The inbox's last item: how the stream ended."""
    __slots__ = ("code", "details")

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        self.details = details


class _Aborted(Exception):
    """A handler's context.abort(): the stream ends with this status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _Stream:
    __slots__ = ("link", "id", "inbox", "reader", "outbox", "queued", "rooms", "credit", "owed",
                 "ended", "dead", "scheduled", "task")

    def __init__(self, link: _Link, sid: int) -> None:
        self.link = link
        self.id = sid
        self.inbox: deque = deque()                  # messages, then possibly an _End
        self.reader: asyncio.Future | None = None    # a read() waiting for the inbox
        self.outbox: deque = deque()                 # (kind, payload) to send, in order
        self.queued = 0                              # messages in the outbox
        self.rooms: list[asyncio.Future] = []        # writes waiting for the outbox
        self.credit = WINDOW                         # messages the peer will still take
        self.owed = 0                                # messages taken, not yet acknowledged
        self.ended: _End | None = None               # nothing more will come in
        self.dead: _End | None = None                # nothing more can go out
        self.scheduled = False                       # in the sender's ring
        self.task: asyncio.Task | None = None        # server: the handler

    # -- receiving ----------------------------------------------------------------------
    def deliver(self, item: Any) -> None:
        if self.ended is not None:
            return
        if isinstance(item, _End):
            self.ended = item
        self.inbox.append(item)
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)

    def receive(self, frame: Any) -> None:
        """A frame's credit and message (its end or cancel is the caller's)."""
        if frame.credit:
            self.credit += frame.credit
            if self.outbox:
                self.link.sender.schedule(self)
        if frame.HasField("message"):
            self.deliver(frame.message)

    def finish(self, end: _End) -> None:
        """The stream is over: reads see `end` after what came before, writes fail."""
        self.deliver(end)
        self.kill(end)

    async def take(self) -> Any:
        """The next message, or the _End (left in place, so every later take sees it too)."""
        while not self.inbox:
            self.reader = asyncio.get_running_loop().create_future()
            try:
                await self.reader
            finally:
                self.reader = None
        item = self.inbox[0]
        if isinstance(item, _End):
            return item
        self.inbox.popleft()
        self.owed += 1
        if self.owed >= WINDOW // 2:
            self.link.sender.schedule(self)  # the credit goes on its own
        return item

    # -- sending ------------------------------------------------------------------------
    async def put(self, message: Any) -> None:
        while True:
            if self.dead is not None:
                if self.dead.code == OK:
                    raise asyncio.InvalidStateError("the stream has ended")
                raise _rpc_error(self.dead)
            if self.queued < QUEUED:
                break
            room = asyncio.get_running_loop().create_future()
            self.rooms.append(room)
            try:
                await room
            finally:
                if room in self.rooms:
                    self.rooms.remove(room)
        self.queued += 1
        self.outbox.append((_MESSAGE, message))
        self.link.sender.schedule(self)

    def kill(self, end: _End) -> None:
        """Nothing more can be sent: drop what waits, fail the writer waiting for room."""
        if self.dead is None:
            self.dead = end
            self.outbox.clear()
            self.queued = 0
            self.wake_writer()

    def send_control(self, kind: int, payload: Any = None) -> None:
        self.outbox.append((kind, payload))
        self.link.sender.schedule(self)

    def sendable(self) -> bool:
        if self.outbox and (self.outbox[0][0] != _MESSAGE or self.credit > 0):
            return True
        return self.owed >= WINDOW // 2

    def wake_writer(self) -> None:
        rooms, self.rooms = self.rooms, []
        for room in rooms:
            if not room.done():
                room.set_result(None)


class _Sender:
    """One task writing the link's batches (see the module's docstring for the order)."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.ring: deque[_Stream] = deque()
        self._wake: asyncio.Future | None = None
        self.writing = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    def schedule(self, st: _Stream) -> None:
        if not st.scheduled:
            st.scheduled = True
            self.ring.append(st)
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)

    def _batch(self) -> Any:
        link = self.link
        batch = link.batch_cls()
        frames = batch.frames
        size = 0
        ring = self.ring
        while ring and size < BATCH_BYTES:
            st = ring[0]
            if not st.sendable():
                ring.popleft()
                st.scheduled = False
                continue
            fields: dict[str, Any] = {"stream": st.id}
            if st.outbox and (st.outbox[0][0] != _MESSAGE or st.credit > 0):
                kind, payload = st.outbox[0]
                if kind == _MESSAGE:
                    n = payload.ByteSize()
                    if size and size + n > BATCH_BYTES:
                        break  # the next batch starts with it
                    size += n
                    st.credit -= 1
                    st.queued -= 1
                    fields["message"] = payload
                    st.wake_writer()
                elif kind == _END:
                    fields["end"] = link.end_value(st, payload)
                else:
                    fields["cancel"] = True
                st.outbox.popleft()
            if st.owed:
                fields["credit"], st.owed = st.owed, 0
            frames.add(**fields)
            ring.popleft()
            if st.sendable():
                ring.append(st)
            else:
                st.scheduled = False
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self.ring:
                    self._wake = loop.create_future()
                    await self._wake
                    self._wake = None
                    continue
                batch = self._batch()
                if batch.frames:
                    self.writing = True
                    await self.link.write(batch)
                    self.writing = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the shared stream broke
            self.link.fail(exc)


class _Link:
    """One side of one shared stream: its streams, its sender, and how it writes and ends."""

    def __init__(self, batch_cls: type, write: Callable[[Any], Awaitable[None]],
                 end_value: Callable[[_Stream, Any], Any], name: str) -> None:
        self.batch_cls = batch_cls
        self.write = write
        self.end_value = end_value
        self.name = name
        self.streams: dict[int, _Stream] = {}
        self.failure: _End | None = None
        self.sender = _Sender(self)

    def fail(self, exc: BaseException | None) -> None:
        """The shared stream is gone: every stream on it ends with its status."""
        if self.failure is not None:
            return
        if isinstance(exc, grpc.aio.AioRpcError):
            end = _End(exc.code(), f"{self.name}: {exc.details()}")
        else:
            end = _End(grpc.StatusCode.UNAVAILABLE, f"{self.name}: the shared stream ended"
                       + (f" ({exc!r})" if exc is not None else ""))
        self.failure = end
        for st in self.streams.values():
            st.finish(end)
        self.streams.clear()
        self.sender.task.cancel()


def _rpc_error(end: _End) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(end.code, grpc.aio.Metadata(), grpc.aio.Metadata(), end.details)


# -- the client side ------------------------------------------------------------------------
class Stream:
    """One stream on a shared one, used as a grpc.aio stream-stream call."""

    __slots__ = ("_st", "_link", "_closed_writing", "_cancelled")

    def __init__(self, st: _Stream, link: _Link) -> None:
        self._st = st
        self._link = link
        self._closed_writing = False
        self._cancelled = False

    async def write(self, message: Any) -> None:
        if self._closed_writing:
            raise asyncio.InvalidStateError("write after done_writing")
        await self._st.put(message)

    async def read(self) -> Any:
        item = await self._st.take()
        if isinstance(item, _End):
            if item.code == OK:
                return grpc.aio.EOF
            raise _rpc_error(item)
        return item

    async def done_writing(self) -> None:
        if not self._closed_writing and self._st.dead is None:
            self._closed_writing = True
            self._st.send_control(_END)

    def cancel(self) -> bool:
        st = self._st
        if st.ended is not None:
            return False
        self._cancelled = True
        st.finish(_End(grpc.StatusCode.CANCELLED, "Locally cancelled"))
        self._link.streams.pop(st.id, None)
        if self._link.failure is None:
            st.send_control(_CANCEL)
        return True

    def done(self) -> bool:
        return self._st.ended is not None

    def cancelled(self) -> bool:
        return self._cancelled


class Channel:
    """The client side: `stream()` opens a stream on the shared one, opening that (again) first
    if there is none or it broke. `open_call` starts the Multiplex call (with its options, e.g.
    wait_for_ready)."""

    def __init__(self, open_call: Callable[[], grpc.aio.StreamStreamCall], batch_cls: type,
                 name: str) -> None:
        self._open_call = open_call
        self._batch_cls = batch_cls
        self.name = name
        self._link: _Link | None = None
        self._call: grpc.aio.StreamStreamCall | None = None
        self._reader: asyncio.Task | None = None
        self._ids = 0

    def stream(self) -> Stream:
        link = self._link
        if link is None or link.failure is not None:
            link = self._connect()
        self._ids += 1
        st = _Stream(link, self._ids)
        link.streams[st.id] = st
        return Stream(st, link)

    def _connect(self) -> _Link:
        call = self._open_call()
        link = _Link(self._batch_cls, call.write, lambda st, _: True, self.name)
        self._link, self._call = link, call
        self._reader = asyncio.get_running_loop().create_task(self._read(call, link))
        return link

    async def _read(self, call: grpc.aio.StreamStreamCall, link: _Link) -> None:
        error: BaseException | None = None
        try:
            while (batch := await call.read()) is not grpc.aio.EOF:
                streams = link.streams
                for frame in batch.frames:
                    st = streams.get(frame.stream)
                    if st is None:
                        continue  # cancelled here, or ended
                    st.receive(frame)
                    if frame.HasField("end"):
                        del streams[st.id]
                        st.finish(_End(_BY_VALUE.get(frame.end.code, grpc.StatusCode.UNKNOWN), frame.end.details))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
        finally:
            link.fail(error)
            call.cancel()

    async def close(self) -> None:
        if self._link is not None:
            self._link.fail(grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(),
                                                 grpc.aio.Metadata(), f"{self.name}: the channel closed"))
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()


# -- the server side ------------------------------------------------------------------------
class _Context:
    """What a one-stream handler sees of its stream, when it runs on a shared one."""

    __slots__ = ("_st", "_real")

    def __init__(self, st: _Stream, real: grpc.aio.ServicerContext) -> None:
        self._st = st
        self._real = real

    async def read(self) -> Any:
        item = await self._st.take()
        return grpc.aio.EOF if isinstance(item, _End) else item

    async def write(self, message: Any) -> None:
        await self._st.put(message)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        raise _Aborted(code, details)

    def invocation_metadata(self) -> Any:
        return self._real.invocation_metadata()

    def peer(self) -> str:
        return self._real.peer()

    def auth_context(self) -> Any:
        return self._real.auth_context()


Handler = Callable[[Any, Any], Awaitable[None]]


class Server:
    """The server side of a service's Multiplex method: `serve` answers one call, running
    `handler(None, stream_context)` (the service's one-stream handler, reading with
    context.read()) per stream in a task of its own; `close` ends every call when the service
    stops."""

    def __init__(self, handler: Handler, batch_cls: type, name: str) -> None:
        self.handler = handler
        self.batch_cls = batch_cls
        self.name = name
        self.closing = False
        self._calls: dict[_Link, asyncio.Task] = {}  # each call's frame reader
        self._closer: asyncio.Task | None = None

    async def serve(self, context: grpc.aio.ServicerContext) -> None:
        """Serve one call until the caller ends it (or `close`); the streams still running then
        are cancelled, as gRPC cancels a handler whose caller went away, and awaited."""
        def end_status(st: _Stream, end: _End) -> common_pb2.StreamStatus:
            link.streams.pop(st.id, None)  # its last frame: later frames for it are ignored
            return common_pb2.StreamStatus(code=end.code.value[0], details=end.details)

        link = _Link(self.batch_cls, context.write, end_status, self.name)
        reader = asyncio.get_running_loop().create_task(self._read(context, link))
        self._calls[link] = reader
        try:
            await reader
        except asyncio.CancelledError:
            if not reader.cancelled() or not self.closing:
                raise  # the call itself is cancelled (the caller went away)
        finally:
            del self._calls[link]
            tasks = [st.task for st in link.streams.values() if st.task is not None]
            link.fail(None)  # ends the sender; the handlers' writes fail from now on
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)

    async def _run(self, link: _Link, st: _Stream, context: grpc.aio.ServicerContext) -> None:
        end = _End(OK, "")
        try:
            await self.handler(None, _Context(st, context))
        except _Aborted as exc:
            end = _End(exc.code, exc.details)
        except asyncio.CancelledError:
            if link.failure is None and st.ended is not None and st.ended.code == grpc.StatusCode.CANCELLED:
                return  # the caller cancelled it: nothing to answer
            raise
        except Exception as exc:
            log.exception("%s: stream handler failed", self.name)
            end = _End(grpc.StatusCode.UNKNOWN, f"Unexpected {type(exc).__name__}: {exc}")
        finally:
            st.task = None
        if link.failure is None:
            st.send_control(_END, end)  # after the messages still waiting for credit

    async def _read(self, context: grpc.aio.ServicerContext, link: _Link) -> None:
        last = 0
        streams = link.streams
        loop = asyncio.get_running_loop()
        while (batch := await context.read()) is not grpc.aio.EOF:
            for frame in batch.frames:
                st = streams.get(frame.stream)
                if st is None:
                    if frame.stream <= last or frame.cancel:
                        last = max(last, frame.stream)
                        continue  # ended here already, or cancelled before it began
                    last = frame.stream
                    st = streams[frame.stream] = _Stream(link, frame.stream)
                    if self.closing:
                        st.send_control(_END, _End(grpc.StatusCode.UNAVAILABLE, f"{self.name}: the service is stopping"))
                        continue
                    st.task = loop.create_task(self._run(link, st, context))
                st.receive(frame)
                if frame.end:
                    st.deliver(_End(OK, ""))
                if frame.cancel:
                    st.finish(_End(grpc.StatusCode.CANCELLED, "cancelled by the caller"))
                    del streams[st.id]
                    if st.task is not None:
                        st.task.cancel()

    def close(self) -> None:
        """The service is stopping: new streams are refused (UNAVAILABLE), and each call ends
        once its streams have ended (the service ends them: storage's close_streams) and their
        last frames are written, so the server's stop need not wait out its grace period; a
        call still running then is cancelled by the server, and its streams with it."""
        self.closing = True
        if self._closer is None and self._calls:
            self._closer = asyncio.get_running_loop().create_task(self._end_calls())

    async def _end_calls(self) -> None:
        while self._calls:
            for link, reader in list(self._calls.items()):
                if not link.streams and not link.sender.ring and not link.sender.writing:
                    reader.cancel()
            await asyncio.sleep(0.02)

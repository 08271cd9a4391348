"""Capture on an mvsqlite primary: page-store commits become transactions in the replication log.

Every storage process serving the database runs one capturer. The page store's changelog
(`l <versionstamp>` keys) lists, in commit order across all processes, the pages each commit
wrote and the page count after it. A capture reads the changelog from the version the log
already holds (the log's position: `page_store_version`) up to a fresh read version, reads
those pages as of each commit's version, and appends one log transaction per commit, the
last frame carrying the page count, exactly as a WAL commit frame would. Replicas cannot
tell which backend fed the log.

Several processes: whichever appends first wins. The loser's Append meets FRAME_GAP (the head
moved), so it says Hello again, takes the log's position, and goes on from there. So every
commit enters the log once, in version order. A commit is acknowledged only after the log
holds it: the committing connection captures through its commit before it answers. The
commits of a process that died between its FoundationDB commit and its Append are logged
by the next capture of any process; each capturer also polls every POLL_SECONDS.

History: the log's position also names the page store it follows (`page_store_id`, a random
id kept in FoundationDB). A log that is empty of this store, follows another store, or
whose position GC has passed (the versions it would read from are gone) gets a new history:
ResetLog with if_log_id (so that of several processes only one resets) and an image of every
page as of one version as its first transaction, read and appended a part at a time
(`LogClient.append_large`); replicas then install a snapshot. A commit's own pages are
appended whole (BATCH_PAGES is a target, and a commit is at most ~350 MiB: see DESIGN.md).

The chain (`common.log_chain`): every process appends as the same primary, the page store
("pagestore-<store id>"), so the processes compute the same chain value for the same commit
and a loser's retry of commits the log holds is accepted as the same. A capture continues
the chain value of the last transaction it logged or adopted; when the log answers
LOG_FORKED (it holds other transactions there), or a history carries our store's position
but another primary id, this process stops acknowledging commits, says so at ERROR once,
and waits for a new log id (ResetLog by the operator), as the file backend does. A first
image that meets LOG_FORKED lost a race with another process's image: Hello again.

Frame numbers → versions: before each Append the capturer notes in the page store, for the
history's log id, the last frame number of every version it is about to log
(`PageStore.record_frames`; the first image too: its page count → its version), so a restore
AS_OF_FRAME N (storage.registry) copies the newest version whose frames end at or before N.
Noted before the Append, not after: a process that dies between the two leaves a note that
the next process's Append of the same commits (same position, same frame numbers) makes
true, whereas a note written after could be missing for frames the log holds. GC prunes
notes of versions behind the retention window.
"""
from __future__ import annotations

import logging
import threading
import time

from sqld.storage.capture.log_client import (
    PART_BYTES,
    CaptureError,
    LogClient,
    LogForked,
    LogMoved,
    chain,
    forked_message,
)
from sqld.storage.mvsqlite.pagestore import PageStore
from sqld.storage.mvsqlite.vfs import PAGE_SIZE
from sqld.v1 import replication_pb2 as pb

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
BATCH_PAGES = 2_000   # pages per Append, roughly (a commit is never split)
_RESYNC_ATTEMPTS = 20


class _BehindGc(Exception):
    """GC removed versions this capture needed: start a new history."""


class PageStoreCapturer:
    def __init__(self, name: str, store: PageStore, target: str) -> None:
        self.name = name
        self.store = store
        self._client = LogClient(name, target)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.store_id = 0
        self.log_id = ""
        self.frame_no = 0   # the log's head as far as this process knows
        self.version = 0    # the page-store version the log holds everything up to
        self.chain = b""    # the log's chain value at frame_no
        self.forked = ""    # why commits are not acknowledged ("" while the log follows the store)

    def start(self) -> None:
        self.store_id = self.store.store_id()
        self._client.primary_id = f"pagestore-{self.store_id:016x}"
        with self._lock:
            try:
                self._resync(self._client.hello())
                self._capture(False)
            except LogForked as exc:
                self._fork(str(exc))  # storage serves; commits answer the error until the log is reset
        log.info("capturing db=%s log_id=%s head=%d version=%d", self.name, self.log_id, self.frame_no,
                 self.version)
        self._poller = threading.Thread(target=self._poll, name=f"capture-{self.name}", daemon=True)
        self._poller.start()

    def capture(self, wait_for_replica: bool = False) -> tuple[int, bool]:
        """Log every commit up to now; (the log's head, a replica applied it)."""
        with self._lock:
            try:
                if self.forked:  # until the log gets a new id: see whether it did
                    hello = self._client.hello()
                    if hello.log_id == self.log_id:
                        raise LogForked(self.forked)
                    self._resync(hello)
                    self._unfork()
                applied = self._capture(wait_for_replica)
            except LogForked as exc:
                raise self._fork(str(exc)) from None
            return self.frame_no, applied

    def _fork(self, reason: str) -> LogForked:
        """Stop acknowledging commits (said at ERROR once); the error each commit answers."""
        if not self.forked:
            self.forked = forked_message("this page store", self.name, reason, self.log_id)
            log.error("%s", self.forked)
        return LogForked(self.forked)

    def _unfork(self) -> None:
        if self.forked:
            self.forked = ""
            log.warning("replication log follows the page store again db=%s log_id=%s", self.name, self.log_id)

    # -- keeping up with the log --------------------------------------------------------
    def _resync(self, hello: pb.HelloResponse) -> None:
        """Adopt the log's position, or give the log a new history from this page store."""
        for _ in range(_RESYNC_ATTEMPTS):
            pos = hello.wal_position
            if hello.log_id and hello.head_frame_no:
                if pos.page_store_id == self.store_id and hello.primary_id not in ("", self._client.primary_id):
                    self.log_id = hello.log_id
                    raise LogForked(f"history {hello.log_id} follows this page store but is written by "
                                    f"primary {hello.primary_id!r}, not {self._client.primary_id!r}")
                if pos.page_store_id == self.store_id and pos.page_store_version >= self.store.horizon():
                    self.log_id, self.frame_no, self.version = hello.log_id, hello.head_frame_no, pos.page_store_version
                    self.chain = hello.head_chain
                    return
                hello = self._client.reset(if_log_id=hello.log_id)
            elif hello.log_id:
                try:
                    self._append_image(hello.log_id, hello.head_chain)
                    return
                except (LogMoved, LogForked):
                    hello = self._client.hello()  # another process gave the log its first image
            else:
                hello = self._client.reset(if_log_id="")
        raise CaptureError(f"db {self.name}: the replication log keeps changing under this process; "
                           "check that only primaries of this database append to it")

    def _append_image(self, log_id: str, genesis: bytes) -> None:
        """The whole database as of a current version, as the first transaction of `log_id`
        (whose chain starts from `genesis`)."""
        version = self.store.current_version()
        count = self.store.page_count(version)
        self.log_id, self.frame_no, self.version, self.chain = log_id, 0, version, genesis
        if not count:
            return  # nothing committed yet: the first commit's pages will be the history
        self.store.record_frames(log_id, [(count, version)])

        def read(i: int, n: int) -> list[tuple[int, bytes]]:
            images = self.store.pages_at(list(range(i + 1, i + n + 1)), version)
            return [(p, images.get(p, bytes(PAGE_SIZE))) for p in range(i + 1, i + n + 1)]

        # in parts (AppendRequest.more): one part of pages in memory at a time
        last, _ = self._client.append_large(log_id, PAGE_SIZE, 1, count, count, read, self._position(version),
                                            genesis, _now_ms())
        self.frame_no, self.chain = count, last
        log.info("new history db=%s log_id=%s pages=%d version=%d", self.name, log_id, count, version)

    def _position(self, version: int) -> pb.WalPosition:
        return pb.WalPosition(page_store_version=version, page_store_id=self.store_id)

    def _capture(self, wait_for_replica: bool) -> bool:
        applied = False
        while True:
            try:
                txns, version, more, marks = self._read()
                if txns:
                    self.store.record_frames(self.log_id, marks)
                    applied = self._append(txns, version, wait_for_replica)
                if not more:
                    return applied
            except LogMoved:
                self._resync(self._client.hello())
            except _BehindGc:
                log.warning("replication fell behind gc db=%s version=%d: new history", self.name, self.version)
                self._resync(self._client.reset(if_log_id=self.log_id))

    def _append(self, txns: list[pb.Transaction], version: int, wait_for_replica: bool) -> bool:
        """Append `txns` (the commits up to `version`): a commit larger than one message in parts
        (AppendRequest.more), no message above ~PART_BYTES of pages."""
        big = [t for t in txns if len(t.frames) * PAGE_SIZE > PART_BYTES]
        if not big:
            last = chain(txns, self.chain, self._client.primary_id)
            applied = self._client.append(self.log_id, PAGE_SIZE, txns, self._position(version), self.chain,
                                          wait_for_replica)
            self.frame_no += sum(len(t.frames) for t in txns)
            self.version, self.chain = version, last
            return applied
        applied = False
        for t in txns:  # one by one; the position moves only after the last one
            frames = t.frames
            pos = self._position(version) if t is txns[-1] else self._position(self.version)

            def read(i: int, n: int, frames=frames) -> list[tuple[int, bytes]]:
                return [(f.page_no, f.page) for f in frames[i:i + n]]

            self.chain, applied = self._client.append_large(
                self.log_id, PAGE_SIZE, self.frame_no + 1, len(frames), frames[-1].commit_size, read, pos,
                self.chain, t.commit_time_ms, wait_for_replica)
            self.frame_no += len(frames)
        self.version = version
        return applied

    def _read(self) -> tuple[list[pb.Transaction], int, bool, list[tuple[int, int]]]:
        """Log transactions for the next commits after self.version (about BATCH_PAGES pages
        at most), the version of the last one, whether more commits follow, and each version's
        last frame number (frame, version). Usually one
        FoundationDB transaction; a large commit's pages are read in several, then the GC
        horizon is read again."""
        batch = self.store.changelog_batch(self.version, BATCH_PAGES)
        images, horizon = batch.images, batch.horizon
        if images is None:
            images = {(v, p): image for v, parts in batch.commits for _, pages in parts
                      for p, image in self.store.pages_at(pages, v).items()}
            horizon = self.store.horizon()
        txns, n, now, marks = [], self.frame_no, _now_ms(), []
        for version, parts in batch.commits:
            for count, pages in parts:
                frames = []
                for i, p in enumerate(pages):
                    n += 1
                    frames.append(pb.Frame(frame_no=n, page_no=p, commit_size=count if i == len(pages) - 1 else 0,
                                           page=images.get((version, p), b"")))
                txns.append(pb.Transaction(frames=frames, commit_time_ms=now))
            marks.append((n, version))
        if horizon > self.version or any(not f.page for t in txns for f in t.frames):
            raise _BehindGc()
        return txns, batch.commits[-1][0] if batch.commits else self.version, batch.more, marks

    def version_of_frame(self, frame_no: int) -> tuple[int, str]:
        """The version of the newest commit whose frames end at or before `frame_no` in the
        log's current history (0: none noted, or GC pruned it), and that history's id."""
        log_id = self._client.hello().log_id
        return self.store.version_of_frame(log_id, frame_no), log_id

    def _poll(self) -> None:
        """Log commits nobody logged (their process died before its Append)."""
        failing = False
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.capture()
                if failing:
                    log.info("capture works again db=%s head=%d", self.name, self.frame_no)
                failing = False
            except Exception as exc:  # noqa: BLE001 - the poller must outlive any one failure
                if not failing:
                    log.warning("capture failed db=%s err=%s; retrying", self.name, exc)
                failing = True

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        self._client.close()


def _now_ms() -> int:
    return int(time.time() * 1000)

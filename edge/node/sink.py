"""Where read events go: the outbox first, always (and from there over MQTT).

When the outbox cannot take a read (full because the broker has been away, or the disk is full /
read-only), `emit` does not return: the pipeline stops taking new frames, which is the only way
not to drop reads. It says so in the log, clearly and periodically, and continues by itself when
the outbox can take the read again. While it waits, `on_blocked` (set by the node) is called every
`retry_s`, so the node's metrics lines and status message keep coming and say it is blocked
(`state()`: `outbox_full`, `outbox_unwritable`, `blocked_for_s`). If the node is asked to stop while blocked, the read that
could not be stored is logged in full (so it is not silently gone) and `ReadNotStored` is raised;
so it is at once when the outbox is full and no broker is configured (nothing would ever drain it).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from edge.schema import ReadEvent
from edge.transport.outbox import Outbox, OutboxError, OutboxFull

log = logging.getLogger(__name__)


class ReadNotStored(RuntimeError):
    pass


class OutboxSink:
    def __init__(
        self,
        outbox: Outbox,
        topic: str,
        publisher=None,
        stop_event: threading.Event | None = None,
        warn_every_s: float = 10.0,
        retry_s: float = 0.5,
    ):
        self.outbox = outbox
        self.topic = topic
        self.publisher = publisher
        self.stop_event = stop_event or threading.Event()
        self.warn_every_s = warn_every_s
        self.retry_s = retry_s
        self.stored = 0
        self.blocked_s = 0.0
        self.full_events = 0
        self.write_errors = 0
        # across emits: an outbox that stays full while the broker drains it a read at a time
        # blocks every emit briefly, and must not log a warning for each of them
        self._last_warn = float("-inf")
        # called about every retry_s while an emit waits (the node's metrics and status heartbeat)
        self.on_blocked: Callable[[], None] | None = None
        self.blocked_since: float | None = None  # time.monotonic() when the waiting emit began
        self.blocked_reason: str | None = None  # "outbox_full" or "outbox_unwritable" while waiting

    def state(self) -> dict:
        """Whether a read is waiting for the outbox now, why, and since when (for metrics and status)."""
        since, reason = self.blocked_since, self.blocked_reason
        waiting = round(time.monotonic() - since, 1) if since is not None else 0.0
        return {
            "outbox_full": since is not None and reason == "outbox_full",
            "outbox_unwritable": since is not None and reason == "outbox_unwritable",
            "blocked_for_s": waiting,
            "blocked_s": round(self.blocked_s + waiting, 3),
        }

    def emit(self, event: ReadEvent) -> None:
        payload = event.to_json()
        blocked = False
        t0 = time.monotonic()
        try:
            while True:
                try:
                    self.outbox.put(self.topic, payload, event.read_id)
                    break
                except OutboxFull as err:
                    blocked = True
                    self.blocked_since = self.blocked_since or t0
                    self.blocked_reason = "outbox_full"
                    self.full_events += 1
                    if self.publisher is None:  # nothing will ever drain it: waiting would hang for good
                        log.error("stopping with a read that could not be stored: %s", payload.decode())
                        raise ReadNotStored(f"outbox {self.outbox.path} is full ({self.outbox.max_rows} reads) and no broker "
                                            "is configured to drain it: run again with --broker to send the stored "
                                            "reads, or raise --outbox-max") from None
                    if time.monotonic() - self._last_warn >= self.warn_every_s:
                        # why the broker takes none: unreachable, or refusing them (a login that may not
                        # write this topic fills the outbox with reads it will never take)
                        why = getattr(self.publisher, "last_error", None)
                        log.warning("%s; new frames wait until the broker acknowledges reads%s", err,
                                    f" (last broker error: {why})" if why else "")
                        self._last_warn = time.monotonic()
                except OutboxError as err:
                    blocked = True
                    self.blocked_since = self.blocked_since or t0
                    self.blocked_reason = "outbox_unwritable"
                    self.write_errors += 1
                    if time.monotonic() - self._last_warn >= self.warn_every_s:
                        log.error(
                            "%s. The edge stops taking new frames until the outbox can be written "
                            "(free disk space / fix permissions); no read is dropped",
                            err,
                        )
                        self._last_warn = time.monotonic()
                if self.on_blocked is not None:
                    try:
                        self.on_blocked()
                    except Exception as err:  # the heartbeat must never lose the read
                        log.warning("blocked-outbox callback failed: %s", err)
                if self.stop_event.wait(self.retry_s):
                    log.error("stopping with a read that could not be stored: %s", payload.decode())
                    raise ReadNotStored(f"read {event.read_id} could not be stored in the outbox")
        finally:
            self.blocked_since = self.blocked_reason = None
        self.blocked_s += time.monotonic() - t0 if blocked else 0.0
        self.stored += 1
        if self.publisher is not None:
            self.publisher.notify()

"""Generation jobs: each request runs in its own thread so the page can stream progress and a
partial piano roll, and a Stop button can end it cleanly (keeping what was made).

At most ``MAX_RUNNING`` generations run at once in the process (env ``MUSICLAB_MAX_JOBS``,
default 2 = the cores of a small box); later requests wait in a FIFO queue and the page
shows their place. Past ``MAX_WAITING`` waiting requests (env ``MUSICLAB_MAX_WAITING``) a new
one is refused at once with :class:`Busy`, so a crowd gets a clear answer instead of a long wait. Nothing here touches Streamlit: the pages poll a :class:`Job`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import contextmanager

from ..generation.sampling import SettingsError, engine_threads, generate
from ..midi.io import MidiError
from ..settings import current

MAX_RUNNING = current().max_jobs
MAX_WAITING = current().max_waiting  # past this many waiting requests, new ones are refused
ABANDONED_S = 120.0  # a job its page stopped polling this long ago (tab closed) ends, freeing its slot;
# above the 60 s that Chrome may space a hidden tab's timers (the page polls every 1-2 s)
_cond = threading.Condition()  # guards _queue and _running; notified when a slot frees or the head leaves
_queue: deque = deque()  # jobs waiting, oldest first
_running = 0  # jobs generating now
log = logging.getLogger("musiclab.serving.jobs")


def threads_for(model):
    """``generate(threads=...)`` for a generation holding a slot: every core while it is the only
    one running, one core once another starts (re-asked every 16 tokens; see engine_threads)."""
    return lambda: engine_threads(model, alone=_running <= 1)


def busy() -> bool:
    """Whether other generations run or wait: a live piano roll then costs every listener time (each
    redraw is a figure for the server and a plot for the browser: docs/performance.md)."""
    return _running > 1 or bool(_queue)  # read without the lock: a hint


class LeftQueue(Exception):
    """A request stopped (or was abandoned) while it waited for a slot."""


class Busy(RuntimeError):
    """The queue is full: the request was not taken (the message says so and what to do)."""


def _enqueue(ticket: object) -> None:
    """Put ``ticket`` at the back of the queue, or raise Busy past MAX_WAITING (caller holds _cond)."""
    if ticket in _queue:
        return
    if len(_queue) >= MAX_WAITING:
        raise Busy(
            f"the server is busy: {len(_queue)} requests are already waiting for a generator (the limit is "
            f"{MAX_WAITING}). Try again in a minute; your seed and settings are kept"
        )
    _queue.append(ticket)


@contextmanager
def slot(ticket: object | None = None, should_stop=lambda: False):
    """Hold one of the ``MAX_RUNNING`` generation slots for the ``with`` body. Requests take
    slots first in, first out: a :class:`Job` (already queued as ``ticket``) or an in-session
    generation (A/B rounds, Evaluate) waits its turn here. Raises :class:`LeftQueue` if
    ``should_stop()`` turns True while waiting."""
    global _running
    ticket = object() if ticket is None else ticket
    with _cond:
        _enqueue(ticket)
        try:
            while _queue[0] is not ticket or _running >= MAX_RUNNING:
                if should_stop():
                    raise LeftQueue
                _cond.wait(timeout=0.2)
        except BaseException:  # stopped, or the page's script was interrupted: leave the queue
            _queue.remove(ticket)
            _cond.notify_all()  # the next one may be at the head now
            raise
        _queue.popleft()
        _running += 1
    try:
        yield
    finally:
        with _cond:
            _running -= 1
            _cond.notify_all()


class Job:
    """One generate() call in a background thread. Read ``state`` ("queued", "running",
    "done", "failed"), ``done``/``total`` tokens, ``preview`` (take 0 so far), ``result``
    (list of takes) or ``error`` (a message for the user)."""

    def __init__(self, model, seed, **kwargs):
        self.model, self.seed, self.kwargs = model, seed, kwargs
        self.state = "queued"
        self.done = self.total = 0
        self.created = time.perf_counter()
        self.started = self.ended = None
        self.preview = None
        self.seed_label: str | None = None  # what the page calls the seed (named on the takes' cards)
        self.result = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._seen: float | None = None  # last touch() by a page; None: nobody polls (CLI, tests)
        self.finished = threading.Event()
        with _cond:
            _enqueue(self)  # may raise Busy: then no thread was started
        self._thread = threading.Thread(target=self._run, name="musiclab-generate", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the job to end after the current token; what was made is kept."""
        self._stop.set()

    def touch(self) -> None:
        """A page is watching: call on every poll. A touched job left ``ABANDONED_S`` unwatched stops."""
        self._seen = time.monotonic()

    def _should_stop(self) -> bool:
        return self._stop.is_set() or (self._seen is not None and time.monotonic() - self._seen > ABANDONED_S)

    @property
    def queue_position(self) -> int:
        """How many jobs wait ahead of this one (0 once running)."""
        with _cond:
            return list(_queue).index(self) if self in _queue and self.state == "queued" else 0

    @property
    def tokens_per_second(self) -> float:
        if not self.started:
            return 0.0
        return self.done / max((self.ended or time.perf_counter()) - self.started, 1e-6)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds until a running job ends, from its tokens/s and estimated total; None when not
        running or not yet known."""
        if self.state != "running" or not self.total or not self.done:
            return None
        return max(self.total - self.done, 0) / max(self.tokens_per_second, 1e-6)

    def _progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def _preview(self, pm) -> None:
        if not busy():  # with others waiting or running, the roll stays as it is (or none is drawn)
            self.preview = pm

    def _run(self) -> None:
        try:
            with slot(self, self._should_stop):
                self.state, self.started = "running", time.perf_counter()
                self.result = generate(
                    self.model,
                    self.seed,
                    progress=self._progress,
                    stop=self._should_stop,
                    preview=self._preview,
                    threads=threads_for(self.model),
                    **self.kwargs,
                )
                self.state = "done"
        except LeftQueue:
            self.state, self.error = "failed", "stopped while waiting in the queue"
        except (MidiError, SettingsError, ValueError) as e:
            self.state, self.error = "failed", str(e)
        except Exception as e:  # a bug or a fault (e.g. out of memory): the user gets a message, the log the trace
            log.exception("generation failed")
            self.state, self.error = "failed", f"generation failed unexpectedly ({type(e).__name__}: {e})"
        finally:
            self.ended = time.perf_counter()
            self.finished.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

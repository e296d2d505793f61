"""Long model runs (occlusion, SmoothGrad, Score-CAM) in a background thread that
says how far it is and can be stopped.

    job = Job(lambda job: occlusion_sensitivity(..., progress=job.progress,
                                                should_stop=job.should_stop))
    job.fraction, job.seconds_left()      # for a progress bar
    job.stop()                            # the work ends at its next check
    job.wait(); job.result                # what it computed, complete or not

The work holds one of the server's model slots (:data:`cxr_dash.concurrency.MODEL_GATE`)
while it runs; a job stopped while it waits for one leaves the queue. No Streamlit
here: the dashboard polls a job from its page (``cxr_dash/ui/pages/explain.py``).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from .concurrency import MODEL_GATE, ModelGate


class JobStopped(Exception):
    """Raised inside a job that was stopped before its work started."""


class Job:
    def __init__(self, work: Callable[["Job"], Any], what: str = "", tag: Any = None,
                 gate: ModelGate = MODEL_GATE):
        self.what = what
        self.tag = tag                       # the caller's own label (e.g. its result's key)
        self.done, self.total, self.text = 0, 0, ""
        self.place: int | None = None        # place in the model gate's queue while waiting
        self.started: float | None = None    # when the work got its slot (time.monotonic)
        self.ended: float | None = None
        self.stop_requested: float | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._gate = gate
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True,
                                        name=f"cxr-dash job: {what}")
        self._thread.start()

    def _run(self, work) -> None:
        def waiting(place: int) -> None:
            self.place = place
            if self._stop.is_set():
                raise JobStopped(self.what)
        try:
            with self._gate.slot(on_wait=waiting, poll_s=0.2):
                self.place = None
                self.started = time.monotonic()
                self.result = work(self)
        except BaseException as exc:     # kept for the page that shows the job
            self.error = exc
        finally:
            self.ended = time.monotonic()
            self._finished.set()

    # -- called by the work
    def progress(self, done: int, total: int, text: str = "") -> None:
        self.done, self.total = done, total
        if text:
            self.text = text

    def should_stop(self) -> bool:
        return self._stop.is_set()

    # -- called by whoever shows the job
    def stop(self) -> None:
        if not self._stop.is_set():
            self.stop_requested = time.monotonic()
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set() and not self.finished

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def queued(self) -> bool:
        return self.started is None and not self.finished

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def seconds(self) -> float:
        """Seconds since the work started (0 while queued)."""
        if self.started is None:
            return 0.0
        return (self.ended or time.monotonic()) - self.started

    def seconds_left(self) -> float | None:
        """An estimate from the pace so far; None until the first step is done."""
        if not self.done or not self.total or self.started is None:
            return None
        return self.seconds * (self.total - self.done) / self.done

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the job has finished (done, stopped or failed) within ``timeout`` s."""
        return self._finished.wait(timeout)


def describe_time(seconds: float | None) -> str:
    """'about 12 s left', 'about 2 min left', or '' before there is an estimate."""
    if seconds is None:
        return ""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s left"
    return f"about {round(seconds / 60)} min left"

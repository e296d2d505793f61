"""The server-wide model gate: a bounded number of runs, first come first served, a visible queue."""
import threading
import time

import pytest

from cxr_dash.concurrency import GateBusy, ModelGate, default_slots


def run_in_threads(gate: ModelGate, n: int):
    """n threads, each started once the one before holds a slot or is queued, each
    holding its slot until all have arrived; the order they ran in, the places they saw."""
    order, places, lock, arrived = [], {}, threading.Lock(), threading.Event()

    def work(i):
        with gate.slot(on_wait=lambda place: places.setdefault(i, []).append(place), poll_s=0.05):
            with lock:
                order.append(i)
            arrived.wait(10)
            time.sleep(0.02)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for i, t in enumerate(threads):
        t.start()
        deadline = time.monotonic() + 10
        while gate.running + gate.waiting < i + 1 and time.monotonic() < deadline:
            time.sleep(0.005)
    arrived.set()
    for t in threads:
        t.join(10)
    return order, places


def test_at_most_slots_run_at_once_and_the_queue_is_served_in_order():
    gate = ModelGate(2)
    order, places = run_in_threads(gate, 6)
    assert order == list(range(6))                     # first come, first served
    assert gate.peak_running == 2 and gate.peak_waiting == 4
    assert gate.running == 0 and gate.waiting == 0
    assert places[2][0] == 1 and places[5][0] == 4     # the place each was told on arrival
    assert all(p == sorted(p, reverse=True) for p in places.values())   # only moves forward
    assert 0 not in places and 1 not in places          # found a free slot: never told to wait


def test_a_thread_holding_a_slot_passes_again_and_wait_false_refuses_when_full():
    gate = ModelGate(1)
    with gate.slot():
        with gate.slot(wait=False):                    # nested: no deadlock
            assert gate.running == 1 and gate.held()
        failed = []
        other = threading.Thread(target=lambda: failed.append(_try(gate)))
        other.start()
        other.join()
        assert failed == ["busy"]
    assert not gate.held() and gate.running == 0
    with gate.slot(wait=False):
        pass


def _try(gate):
    try:
        with gate.slot(wait=False):
            return "ran"
    except GateBusy:
        return "busy"


def test_a_caller_that_leaves_the_queue_gives_its_place_up():
    gate = ModelGate(1)
    release = threading.Event()
    holder = threading.Thread(target=lambda: _hold(gate, release))
    holder.start()
    time.sleep(0.05)

    class Rerun(BaseException):        # as Streamlit's RerunException, raised inside the report
        pass

    def leave(place):
        raise Rerun

    with pytest.raises(Rerun):
        with gate.slot(on_wait=leave):
            pass
    assert gate.waiting == 0
    release.set()
    holder.join(5)
    with gate.slot(wait=False):        # nothing left queued or held
        assert gate.running == 1


def _hold(gate, release):
    with gate.slot():
        release.wait(5)


def test_the_slot_count_follows_the_cores_or_the_environment(monkeypatch):
    monkeypatch.setenv("CXR_MODEL_SLOTS", "3")
    assert default_slots() == 3
    monkeypatch.setenv("CXR_MODEL_SLOTS", "0")
    with pytest.raises(ValueError, match="positive integer"):
        default_slots()
    monkeypatch.delenv("CXR_MODEL_SLOTS")
    assert default_slots() >= 1
    with pytest.raises(ValueError):
        ModelGate(0)

"""Training records: the clock that plays snapshots back at the speed training went."""
import numpy as np

from cxr_dash.record import TrainingRecord, frame_at


def record(history, epochs):
    return TrainingRecord("heart", history, np.array(epochs), np.zeros((len(epochs), 1, 4, 4), np.uint8),
                          ["JPCLN001"], {}, {}, {})


def test_snapshot_times_follow_each_epochs_recorded_seconds():
    history = [{"epoch": e, "loss": 1.0, "seconds": s} for e, s in zip(range(1, 6), (10, 10, 30, 30, 100))]
    times = record(history, [2, 3, 5]).snapshot_times()
    assert list(times) == [0, 30, 160]                    # from the first snapshot's epoch on
    assert [frame_at(times, t) for t in (0, 29.9, 30, 159, 160, 1e9)] == [0, 0, 1, 1, 2, 2]
    no_times = [{"epoch": e, "loss": 1.0} for e in range(1, 4)]
    assert record(no_times, [1, 2]).snapshot_times() is None      # paced evenly instead

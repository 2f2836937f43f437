"""The recovery figure: one loss line and one schedule line per target segment."""

import pandas as pd

from sparsity_core.reports.pruning import recovery_curves


def test_recovery_curves_draw_loss_and_schedule_per_segment():
    rows = [(1, "train_loss", "0.5", 10.0, 0.7), (1, "train_loss", "0.5", 20.0, 0.5),
            (1, "schedule_sparsity", "0.5", 0.0, 0.0), (1, "schedule_sparsity", "0.5", 10.0, 0.5),
            (1, "train_loss", "0.9", 30.0, 0.6), (2, "train_loss", "0.5", 10.0, 9.9)]
    frame = pd.DataFrame(rows, columns=["run_id", "key", "series", "x", "value"])
    fig = recovery_curves(frame, 1)
    names = [t.name for t in fig.data]
    assert names == ["loss, to 50%", "loss, to 90%", "sparsity, to 50%"]
    assert list(fig.data[0].y) == [0.7, 0.5]  # run 2's point is not drawn

"""batches.csv: appended in bursts by the training process, tailed incrementally by watchers."""

from __future__ import annotations

import kdcore.batch_log as batch_log
from kdcore.batch_log import BATCH_LOG, BatchLogTail, BatchLogWriter


def test_the_writer_appends_at_most_every_flush_interval(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(batch_log.time, "monotonic", lambda: clock[0])
    writer = BatchLogWriter(tmp_path)
    writer.add(1, 1, 2.5)
    writer.add(2, 1, 2.25)
    assert not (tmp_path / BATCH_LOG).exists()  # buffered until FLUSH_SECONDS have passed
    clock[0] += batch_log.FLUSH_SECONDS
    writer.add(3, 1, 2.0)
    assert (tmp_path / BATCH_LOG).read_text() == "1,1,2.5\n2,1,2.25\n3,1,2\n"
    writer.add(4, 2, 1.5)
    writer.flush()  # the end of a run writes what is left
    assert (tmp_path / BATCH_LOG).read_text().splitlines()[-1] == "4,2,1.5"


def test_a_tail_reads_only_new_whole_lines(tmp_path):
    tail = BatchLogTail(tmp_path)
    assert tail.read() == []  # no file yet
    path = tmp_path / BATCH_LOG
    path.write_text("1,1,2.5\n2,1,2.0\n3,1,1.")  # the last line is still being written
    assert [p["step"] for p in tail.read()] == [1, 2]
    with open(path, "a") as file:
        file.write("75\n4,2,1.5\n")
    points = tail.read()
    assert [p["step"] for p in points] == [1, 2, 3, 4]
    assert points[2] == {"step": 3, "epoch": 1, "loss": 1.75}
    assert tail.read() == points  # nothing new, nothing read twice


def test_a_long_tail_thins_older_points_and_keeps_the_newest(tmp_path):
    (tmp_path / BATCH_LOG).write_text("".join(f"{s},1,{1 / s}\n" for s in range(1, 1001)))
    points = BatchLogTail(tmp_path, max_points=100).read()
    steps = [p["step"] for p in points]
    assert len(points) <= 100 and steps == sorted(steps) and steps[-1] == 1000
    assert steps[-10:] == list(range(991, 1001))  # the recent end keeps every batch

"""Atomic replacement of small files (kdcore.files) holds when threads of one process race."""

from __future__ import annotations

import json
import threading

from kdcore.runs import write_json


def test_threads_replacing_one_file_at_once_never_fail_or_leave_half_a_file(tmp_path):
    path, errors = tmp_path / "settings.json", []
    payloads = [{"writer": n, "padding": "x" * 4096} for n in range(8)]

    def write(payload: dict) -> None:
        try:
            for _ in range(50):
                write_json(path, payload)
        except OSError as error:  # a shared temporary name made renames collide
            errors.append(error)

    threads = [threading.Thread(target=write, args=(payload,)) for payload in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and json.loads(path.read_text()) in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]  # no temporaries left

"""Run folders: validation, what a run writes, failures, stop requests, listing after a restart."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
import torch

from kdcore.batch_log import BATCH_LOG
from kdcore.checkpoints import load_model
from kdcore.cli import main
from kdcore.deletion import delete_runs, dependants
from kdcore.engine import Callback
from kdcore.evaluation import read_evaluation
from kdcore.execute import execute_run
from kdcore.runs import (
    RunError,
    RunSpec,
    create_run,
    list_runs,
    load_run,
    read_json,
    read_metrics,
    request_stop,
    run_dir,
    validate,
)
from kdcore.status import RunStatus, read_status, write_status

TINY = {"data": "synthetic", "epochs": 2, "train_subset": 64, "batch_size": 32}


def student(**overrides) -> RunSpec:
    return RunSpec(**{"role": "student", **TINY, **overrides})


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (student(temperature=0.0), "Temperature T must be greater than 0"),
        (student(temperature=-2.0), "Temperature T must be greater than 0"),
        (student(alpha=1.5), r"must lie in \[0, 1\]"),
        (student(epochs=0), "Epochs must be at least 1"),
        (student(train_subset=0), "at least 1 image"),
        (student(role="coach"), "Unknown role 'coach'"),
        (student(arch="resnet18"), "Students are smallcnn"),
        (RunSpec(role="teacher", arch="vgg16", **TINY), "Unknown teacher architecture 'vgg16'"),
        (RunSpec(role="teacher", arch="resnet18", init="magic", **TINY), "Unknown initialisation"),
        (RunSpec(role="teacher", arch="resnet18", init="file", **TINY), "give --weights-file"),
        (RunSpec(role="teacher", arch="cifarnet", init="imagenet", **TINY), "no ImageNet weights"),
        (RunSpec(role="teacher", arch="cifarnet", stem="cifar", **TINY), "Only ResNets"),
        (RunSpec(role="teacher", arch="resnet18", stem="wide", **TINY), "Unknown stem 'wide'"),
        (student(val_split=-1), "cannot be negative"),
        (student(teacher_tta="flip"), "Only a distillation reads a teacher"),
        (RunSpec(role="distill", teacher_tta="mirror", **TINY), "Unknown teacher test-time"),
        (RunSpec(role="distill", **TINY), "Distillation needs a teacher"),
        (RunSpec(role="distill", teacher="no-such-run", **TINY), "No run"),
        (RunSpec(role="distill", teacher="/nowhere/t.pt", **TINY), "does not exist"),
    ],
)
def test_validate_refuses_impossible_runs(tmp_path, spec, message):
    with pytest.raises(RunError, match=message):
        validate(spec, tmp_path)


def test_unknown_data_folder_is_refused_before_anything_is_created(tmp_path):
    spec = student(data=str(tmp_path / "no-such-data"))
    with pytest.raises(RunError, match="does not exist"):
        create_run(spec, tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_role_defaults_fill_unset_optimiser_fields():
    assert RunSpec(role="teacher").train_config().optimizer == "sgd"
    assert RunSpec(role="student").train_config().optimizer == "adamw"
    assert RunSpec(role="student", lr=0.01).train_config().lr == 0.01
    assert RunSpec(role="teacher").model_arch == "resnet101"
    assert RunSpec(role="distill").model_arch == "smallcnn"


def test_teacher_recipes_follow_arch_stem_and_init():
    def teacher(**fields):
        return RunSpec(role="teacher", **fields).train_config()

    cifarnet = teacher(arch="cifarnet")
    assert (cifarnet.optimizer, cifarnet.lr, cifarnet.label_smoothing) == ("muon", 0.08, 0.0)
    assert (cifarnet.muon_lr, cifarnet.muon_momentum) == (0.015, 0.95)
    assert teacher(arch="cifarnet", optimizer="sgd").optimizer == "sgd"  # the recipe before Muon
    assert (cifarnet.weight_decay, cifarnet.crop_padding, cifarnet.flips) == (3e-3, 2, "alternate")
    assert (cifarnet.crop_fill, cifarnet.lookahead) == ("reflect", True)
    assert cifarnet.tta == "flip+translate"
    resnet = teacher(arch="resnet18")
    assert (resnet.flips, resnet.crop_fill, resnet.lookahead, resnet.tta) == (
        "random", "zero", False, "off")  # fmt: skip
    assert teacher(arch="resnet18").lr == 0.1  # cifar stem, from scratch
    assert teacher(arch="resnet18", stem="imagenet").lr == 0.2
    assert teacher(arch="resnet101", init="imagenet").lr == 0.02
    assert teacher(arch="cifarnet", lr=0.05).lr == 0.05


def test_stem_is_the_cifar_one_for_new_resnet_runs_and_none_for_others():
    assert RunSpec(role="teacher", arch="resnet18").model_stem == "cifar"
    assert RunSpec(role="teacher", arch="resnet18", stem="imagenet").model_stem == "imagenet"
    assert RunSpec(role="teacher", arch="cifarnet").model_stem is None
    assert RunSpec(role="student").model_stem is None


def test_a_resnet_config_saved_before_stems_reads_as_the_imagenet_stem():
    legacy = {"role": "teacher", "arch": "resnet101", "data": "synthetic", "epochs": 10}
    assert RunSpec.from_dict(legacy).model_stem == "imagenet"
    assert RunSpec.from_dict({"role": "teacher", "data": "synthetic"}).model_stem == "imagenet"
    assert RunSpec.from_dict({"role": "student", "data": "synthetic"}).stem is None
    new = RunSpec(role="teacher", arch="resnet18")
    assert RunSpec.from_dict(new.to_dict()).model_stem == "cifar"


def test_a_validation_split_picks_best_on_val_and_reports_it(tmp_path, fast_synthetic):
    run_id = create_run(student(val_split=400, epochs=2), tmp_path)
    result = execute_run(run_id, tmp_path, device="cpu")
    assert all(0.0 <= row["val_acc"] <= 1.0 and "val_loss" in row for row in result.history)
    best = torch.load(tmp_path / run_id / "best.pt", weights_only=True)["meta"]
    assert best["chosen_on"] == "val_acc"
    chosen = result.history[best["epoch"] - 1]
    assert chosen["val_acc"] == max(row["val_acc"] for row in result.history)
    assert best["test_acc"] == chosen["test_acc"]


def test_a_validation_split_or_subset_larger_than_the_training_set_is_refused(tmp_path):
    with pytest.raises(RunError, match="must leave training images; synthetic holds 4000"):
        create_run(student(val_split=4000), tmp_path)  # synthetic train holds 4,000
    with pytest.raises(RunError, match="Training subset 3901 is larger than the 3900 training "
                       "images left after the validation split of 100"):  # fmt: skip
        create_run(student(val_split=100, train_subset=3901), tmp_path)
    assert list_runs(tmp_path) == []


def test_a_data_set_that_shrank_since_the_run_was_made_fails_it_clearly(tmp_path, image_folder):
    run_id = create_run(student(data=str(image_folder), train_subset=5), tmp_path)  # 5 images
    (image_folder / "train" / "zebra" / "a.jpg").unlink()
    with pytest.raises(RunError, match="Training subset 5 is larger than the 4 training images"):
        execute_run(run_id, tmp_path, device="cpu")
    assert "larger than the 4" in read_json(tmp_path / run_id / "status.json")["error"]


def test_spec_round_trips_through_a_dict_and_ignores_unknown_keys():
    spec = student(temperature=4.0, alpha=0.9, label="x")
    assert RunSpec.from_dict({**spec.to_dict(), "id": "abc", "created_at": 1.0}) == spec


# --- run folders --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["../x", "/etc", "a/b", "..", ".", "", ".hidden", "a\\..\\b"])
def test_run_dir_refuses_ids_that_leave_the_root(tmp_path, bad_id):
    with pytest.raises(RunError, match="is not a run id"):
        run_dir(bad_id, tmp_path)


def test_run_dir_of_a_good_id_is_inside_the_root(tmp_path):
    assert run_dir("20240101-student-smallcnn-ab12", tmp_path).parent == tmp_path.resolve()


def test_create_run_writes_config_and_queued_status(tmp_path):
    spec = student(label="first")
    run_id = create_run(spec, tmp_path)
    folder = tmp_path / run_id
    config = json.loads((folder / "config.json").read_text())
    assert config["id"] == run_id and RunSpec.from_dict(config) == spec
    status = read_status(folder)
    assert status.state == "queued" and status.pid is None
    assert not list(folder.glob(".*.tmp"))


def test_execute_run_records_metrics_weights_and_status(tmp_path, fast_synthetic):
    run_id = create_run(student(), tmp_path)
    result = execute_run(run_id, tmp_path, device="cpu")
    folder = tmp_path / run_id
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert read_metrics(folder) == [json.loads(line) for line in lines]
    for name in ("best.pt", "last.pt"):
        payload = torch.load(folder / name, weights_only=True)
        assert payload["arch"] == "smallcnn" and payload["meta"]["run_id"] == run_id
        model, _ = load_model(folder / name)
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    status = read_status(folder)
    assert (status.state, status.epochs_done, status.pid) == ("finished", 2, os.getpid())
    assert status.best_test_acc == result.best_test_acc
    assert status.step == status.total_steps == 4 and status.ended_at >= status.started_at
    batches = (folder / BATCH_LOG).read_text().splitlines()
    assert [int(line.split(",")[0]) for line in batches] == [1, 2, 3, 4]  # 2 epochs x 2 batches
    best_epoch = torch.load(folder / "best.pt", weights_only=True)["meta"]["epoch"]
    assert result.history[best_epoch - 1]["test_acc"] == result.best_test_acc
    record = load_run(run_id, tmp_path)
    assert record.status == "finished" and record.progress == 1.0
    assert record.final_test_acc == result.history[-1]["test_acc"]


def test_a_failing_run_records_failed_with_the_error(tmp_path, image_folder):
    run_id = create_run(student(data=str(image_folder), train_subset=None), tmp_path / "runs")
    shutil.rmtree(image_folder)  # the data vanishes between queueing and running
    with pytest.raises(Exception, match="does not exist"):
        execute_run(run_id, tmp_path / "runs", device="cpu")
    status = read_status(tmp_path / "runs" / run_id)
    assert status.state == "failed"
    assert "DataError" in status.error and "does not exist" in status.error
    assert load_run(run_id, tmp_path / "runs").status == "failed"


class StopAfter(Callback):
    def __init__(self, stop: threading.Event, batches: int):
        self.stop, self.batches = stop, batches

    def on_batch_end(self, step, logs):
        if step >= self.batches:
            self.stop.set()


def test_a_stopped_run_keeps_a_consistent_folder(tmp_path, fast_synthetic):
    run_id = create_run(student(epochs=3), tmp_path)
    stop = threading.Event()
    result = execute_run(run_id, tmp_path, callbacks=[StopAfter(stop, 3)], stop_event=stop,
                         device="cpu")  # fmt: skip
    folder = tmp_path / run_id
    assert result.status == "stopped" and len(result.history) == 1
    assert read_status(folder).state == "stopped"
    assert len(read_metrics(folder)) == 1
    last = torch.load(folder / "last.pt", weights_only=True)  # the last whole epoch: resumable
    assert last["meta"]["epoch"] == 1 and len(last["train_state"]["history"]) == 1


class RequestStopAfter(Callback):
    """Does what the dashboard's Stop button does: writes the run's stop file."""

    def __init__(self, folder, batches: int):
        self.folder, self.batches = folder, batches

    def on_batch_end(self, step, logs):
        if step == self.batches:
            request_stop(self.folder)


def test_a_stop_file_stops_the_run_at_a_batch_and_leaves_whole_files(tmp_path, fast_synthetic):
    run_id = create_run(student(epochs=50), tmp_path)
    folder = tmp_path / run_id
    result = execute_run(run_id, tmp_path, callbacks=[RequestStopAfter(folder, 5)], device="cpu")
    assert result.status == "stopped" and len(result.history) < 50
    assert read_status(folder).state == "stopped"
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert rows == read_metrics(folder) and len(rows) == len(result.history)
    model, payload = load_model(folder / "last.pt")
    assert payload["meta"]["epoch"] == len(rows) and "train_state" in payload


def test_only_a_queued_run_can_be_executed(tmp_path, fast_synthetic):
    run_id = create_run(student(epochs=1), tmp_path)
    execute_run(run_id, tmp_path, device="cpu")
    with pytest.raises(RunError, match="is finished; only a queued run"):
        execute_run(run_id, tmp_path, device="cpu")


def test_teacher_run_then_distillation_from_its_run_id(tmp_path, fast_synthetic):
    teacher_spec = RunSpec(
        role="teacher", arch="resnet18", **{**TINY, "epochs": 1, "train_subset": 32}
    )
    teacher_id = create_run(teacher_spec, tmp_path)
    execute_run(teacher_id, tmp_path, device="cpu")
    saved = torch.load(tmp_path / teacher_id / "best.pt", weights_only=True)
    assert (saved["arch"], saved["stem"]) == ("resnet18", "cifar")
    model, _ = load_model(tmp_path / teacher_id / "best.pt")
    assert isinstance(model.maxpool, torch.nn.Identity)

    distill_spec = RunSpec(role="distill", teacher=teacher_id, **{**TINY, "epochs": 1})
    distill_id = create_run(distill_spec, tmp_path)
    execute_run(distill_id, tmp_path, device="cpu")
    status = read_status(tmp_path / distill_id)
    assert status.state == "finished" and status.teacher_cache["epochs_computed"] == 1
    report = read_evaluation(tmp_path / distill_id)  # stored for every finished student
    assert report["teacher"] == teacher_id and report["images"] == 1000
    research = {"test_acc", "agreement", "kl_teacher_student", "ece", "teacher_ece", "nll"}
    assert research <= set(report)
    assert sum(map(sum, report["confusion"])) == 1000 and len(report["teacher_confusion"]) == 10
    assert read_evaluation(tmp_path / teacher_id) is None  # teachers are not students


def test_read_metrics_skips_a_half_written_last_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "test_acc": 0.5}\n{"epoch": 2, "te')
    assert read_metrics(tmp_path) == [{"epoch": 1, "test_acc": 0.5}]


# --- listing after a restart --------------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_list_runs_marks_a_running_run_of_a_dead_process_interrupted(tmp_path):
    first = create_run(student(label="old"), tmp_path)
    second = create_run(student(label="new"), tmp_path)
    running = RunStatus(state="running", pid=dead_pid(), heartbeat=time.time())
    write_status(tmp_path / first, running)
    (tmp_path / "stray-folder").mkdir()  # no config.json: not a run

    records = {record.run_id: record for record in list_runs(tmp_path)}
    assert set(records) == {first, second}
    assert records[first].status == "interrupted" and "ended" in records[first].run_status.error
    assert records[second].status == "queued"  # a queued folder waits for any queue to start it


def test_a_run_with_a_corrupt_status_is_listed_as_failed_with_the_reason(tmp_path):
    run_id = create_run(student(), tmp_path)
    (tmp_path / run_id / "status.json").write_text("{not json")
    (record,) = list_runs(tmp_path)
    assert record.status == "failed" and "corrupt" in record.run_status.error


def test_list_runs_is_newest_first(tmp_path):
    ids = [create_run(student(label=str(k)), tmp_path) for k in range(3)]
    for offset, run_id in enumerate(ids):
        config = read_json(tmp_path / run_id / "config.json")
        (tmp_path / run_id / "config.json").write_text(json.dumps({**config, "created_at": offset}))
    assert [record.run_id for record in list_runs(tmp_path)] == ids[::-1]


def test_load_run_of_an_unknown_id_is_a_run_error(tmp_path):
    with pytest.raises(RunError, match="No run"):
        load_run("missing-run", tmp_path)


def test_train_config_takes_role_defaults_unless_given():
    student = RunSpec(role="student").train_config()
    assert (student.optimizer, student.label_smoothing) == ("adamw", 0.1)
    assert RunSpec(role="teacher").train_config().optimizer == "sgd"
    given = RunSpec(role="student", lr=1e-3, label_smoothing=0.0, weight_decay=0.0).train_config()
    assert (given.lr, given.label_smoothing, given.weight_decay) == (1e-3, 0.0, 0.0)


@pytest.mark.parametrize(
    ("damage", "shown_as"),
    [
        (lambda f: (f / "metrics.jsonl").write_text('{"epoch": 2}\n5\n'), "finished"),
        (lambda f: (f / "metrics.jsonl").write_bytes(b'\xff{"epoch": 1}\n'), "finished"),
        (lambda f: _edit_config(f, created_at="yesterday"), "unreadable: config.json"),
        (lambda f: _edit_config(f, role=5), "unreadable: config.json: unknown role"),
        (lambda f: _edit_config(f, epochs="ten"), "unreadable: config.json: epochs"),
        (lambda f: (f / "config.json").write_text('{"role": "stud'), "unreadable: config.json"),
        (lambda f: (f / "status.json").write_text("[1, 2]"), "not a JSON object"),
        (lambda f: (f / "status.json").write_text('{"status": 5}'), "neither a version"),
        (
            lambda f: (f / "status.json").write_text('{"status": "running", "pid": 1}'),
            "stopped reporting",
        ),
    ],
)
def test_a_damaged_run_folder_is_listed_with_the_reason_beside_the_good_runs(
    tmp_path, fast_synthetic, damage, shown_as
):
    good, damaged = (create_run(student(epochs=1, seed=k), tmp_path) for k in (0, 1))
    for run_id in (good, damaged):
        execute_run(run_id, tmp_path, device="cpu")
    damage(tmp_path / damaged)
    records = {record.run_id: record for record in list_runs(tmp_path)}
    assert set(records) == {good, damaged} and records[good].status == "finished"
    hurt = records[damaged]
    if shown_as == "finished":  # damaged metric lines are skipped, the run stays usable
        assert hurt.status == "finished" and hurt.metrics == ()
    else:
        assert hurt.status in ("failed", "interrupted") and shown_as in hurt.run_status.error
    assert main(["runs", "--out", str(tmp_path)]) == 0


def _edit_config(folder, **fields):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **fields}))


# --- deleting runs ------------------------------------------------------------------------------


def _teacher_with_dependants(root):
    """A teacher folder, a distilled run naming it by id, one by its checkpoint, and a sweep."""
    teacher = create_run(RunSpec(role="teacher", arch="cifarnet", **TINY), root)
    by_id, by_path, other = (create_run(student(seed=k), root) for k in range(3))
    _edit_config(root / by_id, role="distill", teacher=teacher)
    _edit_config(root / by_path, role="distill", teacher=str(root / teacher / "best.pt"))
    sweep = root / "sweeps" / "sweep-0123456789"
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"spec": {"teacher": teacher}, "trials": {}}))
    (root / "sweeps" / "sweep-other").mkdir()
    (root / "sweeps" / "sweep-other" / "sweep.json").write_text('{"spec": {"teacher": "x"}}')
    for run_id in (teacher, by_id, by_path, other):
        write_status(root / run_id, RunStatus(state="finished", phase="finished"))
    return teacher, by_id, by_path, other


def test_dependants_of_a_teacher_are_its_distilled_runs_and_sweeps(tmp_path):
    teacher, by_id, by_path, other = _teacher_with_dependants(tmp_path)
    found = dependants(teacher, tmp_path)
    assert set(found.runs) == {by_id, by_path} and found.sweeps == ("sweep-0123456789",)
    assert not dependants(other, tmp_path)


def test_delete_runs_removes_the_folders_and_leaves_the_rest(tmp_path):
    teacher, by_id, by_path, other = _teacher_with_dependants(tmp_path)
    assert delete_runs([by_id, other, by_id], tmp_path) == [by_id, other]
    assert {record.run_id for record in list_runs(tmp_path)} == {teacher, by_path}
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".deleting")]
    assert (tmp_path / "sweeps" / "sweep-0123456789" / "sweep.json").is_file()
    assert dependants(teacher, tmp_path).runs == (by_path,)


def test_an_active_run_or_the_teacher_of_one_is_not_deleted(tmp_path):
    teacher, by_id, _, other = _teacher_with_dependants(tmp_path)
    alive = RunStatus(state="running", pid=os.getpid(), heartbeat=time.time())
    write_status(tmp_path / by_id, alive)
    with pytest.raises(RunError, match="stop it before deleting it"):
        delete_runs([other, by_id], tmp_path)
    with pytest.raises(RunError, match=f"teaches {by_id}"):
        delete_runs([teacher], tmp_path)
    write_status(tmp_path / other, RunStatus(state="queued"))
    with pytest.raises(RunError, match="is queued; stop it"):
        delete_runs([other], tmp_path)
    assert len(list_runs(tmp_path)) == 4  # nothing was removed


@pytest.mark.parametrize("bad_id", ["../outside", "..", "sweeps", "no-such-run", "link"])
def test_delete_runs_removes_only_run_folders_under_the_root(tmp_path, bad_id):
    root = tmp_path / "checkpoints"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    run_id = create_run(student(), root)
    write_status(root / run_id, RunStatus(state="finished", phase="finished"))
    (root / "sweeps").mkdir()
    (root / "link").symlink_to(root / run_id)
    with pytest.raises(RunError):
        delete_runs([run_id, bad_id], root)
    assert (outside / "config.json").is_file() and (root / run_id / "config.json").is_file()


def test_a_run_records_its_resolved_recipe_and_trains_with_it(
    tmp_path, fast_synthetic, monkeypatch
):
    import kdcore.execute as execute

    run_id = create_run(RunSpec(role="teacher", arch="cifarnet", data="synthetic", epochs=1,
                                train_subset=64, batch_size=32), tmp_path)  # fmt: skip
    folder = tmp_path / run_id
    config = json.loads((folder / "config.json").read_text())
    recorded = config["train_config"]
    assert recorded["lr"] == 0.08 and recorded["crop_padding"] == 2 and recorded["epochs"] == 1
    # a recipe changed after the run was made does not reach it: the recorded one does
    config["train_config"] = {**recorded, "lr": 0.02, "added_in_a_later_version": True}
    (folder / "config.json").write_text(json.dumps(config))
    seen = []
    real_fit = execute.fit
    monkeypatch.setattr(execute, "fit", lambda *a, **k: seen.append(a[3]) or real_fit(*a, **k))
    assert execute_run(run_id, tmp_path, device="cpu").status == "finished"
    assert seen[0].lr == 0.02 and seen[0].crop_padding == 2


def test_a_run_made_before_recipes_were_recorded_trains_with_the_current_one(tmp_path):
    from kdcore.runs import recorded_train_config

    run_id = create_run(student(), tmp_path)
    folder = tmp_path / run_id
    config = json.loads((folder / "config.json").read_text())
    del config["train_config"]
    (folder / "config.json").write_text(json.dumps(config))
    assert recorded_train_config(folder, student()) == student().train_config()
    config["train_config"] = {"lr": -1}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="train_config cannot be used: Learning rate"):
        recorded_train_config(folder, student())
    with pytest.raises(RunError, match="train_config cannot be used: Learning rate"):
        load_run(run_id, tmp_path).train_config()


def test_a_run_record_carries_the_recipe_its_config_recorded(tmp_path):
    run_id = create_run(student(), tmp_path)
    folder = tmp_path / run_id
    config = json.loads((folder / "config.json").read_text())
    config["train_config"]["lr"] = 0.5
    (folder / "config.json").write_text(json.dumps(config))
    (record,) = list_runs(tmp_path)
    assert record.train_config().lr == 0.5 != student().train_config().lr
    assert record.train_config() == load_run(run_id, tmp_path).train_config()


def test_a_teacher_that_learnt_on_other_crops_than_the_studys_gets_a_note(tmp_path):
    from kdcore.runs import teacher_views_note

    cifarnet = load_run(create_run(RunSpec(role="teacher", arch="cifarnet"), tmp_path), tmp_path)
    note = teacher_views_note(cifarnet)
    assert "learnt on crops padded by 2 with mirrored borders" in note
    assert "the study's views (crops padded by 4 with black borders)" in note
    resnet = load_run(create_run(RunSpec(role="teacher", arch="resnet18"), tmp_path), tmp_path)
    assert teacher_views_note(resnet) is None  # its recipe crops as the study does
    config = json.loads((cifarnet.folder / "config.json").read_text())
    config["train_config"] = {"crop_padding": 99}
    (cifarnet.folder / "config.json").write_text(json.dumps(config))
    reread = load_run(cifarnet.run_id, tmp_path)
    assert teacher_views_note(reread) is None  # an unusable record: no claim either way

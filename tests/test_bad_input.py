"""Bad input gets a clear refusal, never a traceback or a number that lies.

Mismatched classes (a test split, a teacher, a data set of other classes), a student given as
the teacher, devices that do not exist, hostile files inside a data set, damaged teacher-cache
entries, and what a kill -9 leaves in a run folder.
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
import threading
import time
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

import kdcore.execute
from kdcore.checkpoints import load_model, save_checkpoint
from kdcore.cli import main
from kdcore.data import DataError, load_split, source_classes
from kdcore.evaluation import evaluate_checkpoint
from kdcore.execute import execute_run
from kdcore.models import build_model
from kdcore.runs import RunError, RunSpec, create_run, list_runs, load_run, read_metrics, validate
from kdcore.status import RunStatus, read_status, this_process, write_status
from kdcore.teacher_cache import TeacherOutputs

TINY = {"epochs": 1, "batch_size": 8}
CPU = torch.device("cpu")


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def image_folder(root: Path, train: list[str], test: list[str], per_class: int = 2) -> Path:
    """A train/<class>/, test/<class>/ folder of tiny PNGs with the given class names."""
    for split, classes in (("train", train), ("test", test)):
        for k, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                (root / split / name / f"{i}.png").write_bytes(png((40 * k, 10 * i, 90)))
    return root


def checkpoint(path: Path, classes: list[str], role: str = "teacher", data: str = "x") -> Path:
    meta = {"role": role, "spec": {"data": data}}
    save_checkpoint(path, build_model("smallcnn", len(classes)), "smallcnn", classes, meta)
    return path


def bomb_png() -> bytes:
    """A PNG whose header claims 100,000 x 100,000 pixels: 10 gigapixels, in 67 bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


# --- classes must match -------------------------------------------------------------------------


def test_a_test_split_of_other_classes_is_refused_naming_both_lists(tmp_path):
    data = image_folder(tmp_path / "pets", train=["cat", "dog"], test=["zebra"])
    with pytest.raises(RunError, match=r"train/ has 2 \(cat, dog\).*test/ has 1 \(zebra\)"):
        create_run(RunSpec(role="student", data=str(data), **TINY), tmp_path / "ck")
    assert not (tmp_path / "ck").exists() or not list_runs(tmp_path / "ck")


def test_a_run_whose_data_changed_classes_since_it_was_made_fails_with_both_lists(tmp_path):
    data = image_folder(tmp_path / "pets", train=["cat", "dog"], test=["cat", "dog"])
    run_id = create_run(RunSpec(role="student", data=str(data), **TINY), tmp_path / "ck")
    (data / "test" / "dog").rename(data / "test" / "zebra")
    with pytest.raises(DataError, match="classes do not match"):
        execute_run(run_id, tmp_path / "ck")
    status = read_status(tmp_path / "ck" / run_id)
    assert status.state == "failed" and "(cat, zebra)" in status.error
    assert not (tmp_path / "ck" / run_id / "best.pt").exists()


def test_evaluating_a_model_of_other_classes_is_refused(tmp_path):
    data = image_folder(tmp_path / "pets", train=["cat", "dog"], test=["cat", "dog"])
    weights = checkpoint(tmp_path / "m.pt", [f"pattern{k}" for k in range(10)])
    with pytest.raises(DataError, match=r"has 10 \(pattern0.*has 2 \(cat, dog\)"):
        evaluate_checkpoint(weights, str(data), None, tmp_path, CPU)


def test_evaluating_against_a_teacher_of_other_classes_is_refused(tmp_path):
    data = image_folder(tmp_path / "pets", train=["cat", "dog"], test=["cat", "dog"])
    student = checkpoint(tmp_path / "s.pt", ["cat", "dog"], role="student")
    teacher = checkpoint(tmp_path / "t.pt", ["ant", "bee"])
    with pytest.raises(DataError, match=r"teacher .*t\.pt has 2 \(ant, bee\)"):
        evaluate_checkpoint(student, str(data), str(teacher), tmp_path, CPU)


@pytest.mark.parametrize(
    ("teacher_classes", "shown"),
    [
        ([f"pattern{k}" for k in range(10)], r"has 10 \(pattern0"),
        (["cat", "dog", "eel"], r"has 3 \(cat, dog, eel\)"),  # another number of classes
        (["dog", "cat"], r"has 2 \(dog, cat\)"),  # the same names in another order
    ],
)
def test_distilling_from_a_teacher_of_other_classes_is_refused(tmp_path, teacher_classes, shown):
    data = image_folder(tmp_path / "pets", train=["cat", "dog"], test=["cat", "dog"])
    teacher = checkpoint(tmp_path / "t.pt", teacher_classes)
    spec = RunSpec(role="distill", data=str(data), teacher=str(teacher), **TINY)
    with pytest.raises(RunError, match=rf"classes do not match: teacher .*{shown}"):
        create_run(spec, tmp_path / "ck")
    assert list_runs(tmp_path / "ck") == []


@pytest.mark.parametrize(
    ("role", "named"), [("student", "student-alone"), ("distill", "distilled student")]
)
def test_distilling_from_a_student_run_is_refused_naming_its_role(tmp_path, role, named):
    student = checkpoint(tmp_path / "s.pt", [f"pattern{k}" for k in range(10)], role=role)
    spec = RunSpec(role="distill", data="synthetic", teacher=str(student), **TINY)
    with pytest.raises(RunError, match=f"is a {named} run, not a teacher"):
        validate(spec, tmp_path)


def test_the_same_classes_from_another_source_are_accepted_with_a_warning(tmp_path, capsys):
    first = image_folder(tmp_path / "a", train=["cat", "dog"], test=["cat", "dog"])
    second = image_folder(tmp_path / "b", train=["cat", "dog"], test=["cat", "dog"])
    teacher = checkpoint(tmp_path / "t.pt", ["cat", "dog"], data=str(first))
    args = ["distill", "--teacher", str(teacher), "--data-dir", str(second), "--epochs", "1"]
    assert main([*args, "--batch-size", "4", "--out", str(tmp_path / "ck")]) == 0
    assert f"trained on {first}" in capsys.readouterr().err
    capsys.readouterr()
    args[4] = str(first)  # the teacher's own data: no warning
    assert main([*args, "--batch-size", "4", "--out", str(tmp_path / "ck")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_class_lists_come_from_the_listing_of_an_archive(tmp_path, monkeypatch):
    folder = image_folder(tmp_path / "pets", train=["cat", "dog"], test=["cat", "dog", "eel"])
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="pets")
    monkeypatch.setattr(kdcore.data, "_decode_pixels", None)  # listing only: nothing decoded
    classes = source_classes(str(archive))
    assert classes == {"train": ("cat", "dog"), "test": ("cat", "dog", "eel")}
    monkeypatch.setattr(kdcore.data, "_archive_listing", None)  # kept beside the split caches
    assert source_classes(str(archive)) == classes


def test_renaming_a_class_folder_is_a_new_data_set_for_the_caches(tmp_path):
    data = image_folder(tmp_path / "pets", train=["cat", "dog"], test=["cat", "dog"])
    assert load_split(str(data), "test").classes == ("cat", "dog")
    (data / "test" / "dog").rename(data / "test" / "eel")
    assert load_split(str(data), "test").classes == ("cat", "eel")
    assert source_classes(str(data))["test"] == ("cat", "eel")


# --- no raw tracebacks --------------------------------------------------------------------------


def test_a_decompression_bomb_in_a_data_folder_gets_the_upload_limit_and_message(tmp_path):
    data = image_folder(tmp_path / "pets", train=["cat"], test=["cat"])
    (data / "train" / "cat" / "bomb.png").write_bytes(bomb_png())
    with pytest.raises(DataError) as refused:
        load_split(str(data), "train")
    message = str(refused.value)
    assert "train/cat/bomb.png is too large" in message and "megapixels; limit 40)" in message


def test_an_undecodable_image_is_named_by_its_path_not_a_buffer(tmp_path):
    data = image_folder(tmp_path / "pets", train=["cat"], test=["cat"])
    (data / "test" / "cat" / "junk.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError) as refused:
        load_split(str(data), "test")
    assert "test/cat/junk.jpg" in str(refused.value) and "BytesIO" not in str(refused.value)


def test_a_huge_archive_member_is_refused_before_it_is_read(tmp_path, monkeypatch):
    archive = tmp_path / "big.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("set/train/cat/huge.png")
        info.size = 21 * 2**20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    read = []
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda *args: read.append(args))
    with pytest.raises(DataError, match=r"train/cat/huge.png is 21 MiB; .* at most 20 MiB"):
        load_split(str(archive), "train")
    assert read == []


@pytest.mark.parametrize(
    ("device", "message"), [("bogus", "Unknown device 'bogus'"), ("meta", "not supported")]
)
def test_a_device_that_does_not_exist_is_refused_before_a_run_is_made(
    tmp_path, capsys, device, message
):
    with pytest.raises(SystemExit) as exit_:
        main(["student", "--data-dir", "synthetic", "--device", device, "--out", str(tmp_path)])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_an_unknown_compile_mode_is_refused_before_a_run_is_made(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KDCORE_COMPILE", "turbo")
    code = main(["student", "--data-dir", "synthetic", "--out", str(tmp_path)])
    assert code == 2
    assert "Unknown KDCORE_COMPILE 'turbo'; use off, default" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_clearly(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["student", "--data-dir", "synthetic", "--device", "cuda", "--out", str(tmp_path)])
    assert "PyTorch sees none on this machine" in capsys.readouterr().err


@pytest.mark.parametrize("k", ["-1", "0", "two"])
def test_classify_refuses_a_top_k_below_one(tmp_path, capsys, k):
    weights = checkpoint(tmp_path / "m.pt", ["cat", "dog"])
    with pytest.raises(SystemExit) as exit_:
        main(["classify", str(weights), "x.png", "--top-k", k])
    assert exit_.value.code == 2 and "--top-k" in capsys.readouterr().err


def test_errors_about_a_plain_run_do_not_call_it_a_teacher(tmp_path, capsys):
    run_id = create_run(RunSpec(role="student", data="synthetic", **TINY), tmp_path)
    assert main(["classify", run_id, "x.png", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"Run {run_id} has no weights yet" in error and "Teacher" not in error


def test_an_init_file_without_a_file_says_so_without_internal_values(tmp_path):
    with pytest.raises(RunError) as refused:
        validate(RunSpec(role="teacher", arch="resnet18", init="file", **TINY), tmp_path)
    assert "None" not in str(refused.value) and "--weights-file" in str(refused.value)


# --- damaged teacher-cache entries are recomputed -----------------------------------------------


@pytest.fixture
def cached(teacher_file, synthetic_train, tmp_path):
    """(a function making TeacherOutputs on one cache folder, the stored epoch-0 file)."""
    teacher, _ = load_model(teacher_file)
    images = synthetic_train.images[:24]

    def outputs() -> TeacherOutputs:
        return TeacherOutputs(teacher, images, seed=0, cache_dir=tmp_path / "c", classes=10)

    first = outputs().epoch_logits(0, threading.Event())
    return outputs, tmp_path / "c" / "epoch-0000.pt", first


@pytest.mark.parametrize(
    "entry",
    [
        {"logits": torch.zeros(24)},  # wrong shape
        {"logits": torch.zeros(24, 7)},  # another number of classes
        {"logits": torch.full((24, 10), float("nan"))},
        {"logits": torch.ones(24, 10)},  # all equal
        {"logits": torch.zeros(24, 10, dtype=torch.int64)},
        {"logits": "no tensor"},
        {"logits": torch.randn(24, 10), "seconds": "yesterday"},  # metadata of the wrong type
        {"logits": torch.randn(24, 10), "seconds": -5.0},
        [1, 2, 3],
    ],
)
def test_a_damaged_cache_entry_is_recomputed(cached, entry):
    outputs, stored, first = cached
    torch.save(entry, stored)
    again = outputs()
    logits = again.epoch_logits(0, threading.Event())
    assert again.epochs_computed == 1 and again.epochs_from_cache == 0
    assert torch.allclose(logits, first)
    assert torch.allclose(torch.load(stored, weights_only=True)["logits"], first)  # replaced


def test_a_sound_cache_entry_is_read(cached):
    outputs, _, first = cached
    again = outputs()
    assert (
        torch.equal(again.epoch_logits(0, threading.Event()), first)
        and again.epochs_from_cache == 1
    )


# --- a kill -9 never leaves the record ahead of the weights -------------------------------------


def test_the_weights_are_written_before_the_epoch_row(tmp_path, fast_synthetic, monkeypatch):
    rows_when_saved = []
    real_save = kdcore.execute.save_checkpoint

    def save(path, *args, **kwargs):
        rows_when_saved.append((Path(path).name, len(read_metrics(Path(path).parent))))
        real_save(path, *args, **kwargs)

    monkeypatch.setattr(kdcore.execute, "save_checkpoint", save)
    spec = RunSpec(role="student", data="synthetic", epochs=2, train_subset=64, batch_size=32)
    execute_run(create_run(spec, tmp_path), tmp_path)
    # epoch E's weights are saved while metrics.jsonl still holds E - 1 rows
    assert rows_when_saved[:2] == [("best.pt", 0), ("last.pt", 0)]
    # last.pt: after epoch 1, after epoch 2, then once more without the training state
    assert [rows for name, rows in rows_when_saved if name == "last.pt"] == [0, 1, 2]


def _temporary(folder: Path, name: str, age_s: float) -> Path:
    path = folder / name
    path.write_bytes(b"half a checkpoint")
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_reading_a_dead_run_removes_its_stale_temporaries_only(tmp_path):
    run_id = create_run(RunSpec(role="student", data="synthetic", **TINY), tmp_path)
    folder = tmp_path / run_id
    write_status(folder, RunStatus(state="interrupted", error="killed"))
    stale = _temporary(folder, ".best.pt.x1y2.tmp", age_s=300)
    fresh = _temporary(folder, ".last.pt.a1b2.tmp", age_s=0)
    assert [record.run_id for record in list_runs(tmp_path)] == [run_id]
    assert not stale.exists() and fresh.exists()
    assert (folder / "config.json").is_file()


def test_a_running_run_keeps_its_temporaries(tmp_path):
    run_id = create_run(RunSpec(role="student", data="synthetic", **TINY), tmp_path)
    folder = tmp_path / run_id
    write_status(folder, RunStatus(state="running", **this_process()))
    old = _temporary(folder, ".best.pt.x1y2.tmp", age_s=300)
    assert load_run(run_id, tmp_path).status == "running"
    assert old.exists()

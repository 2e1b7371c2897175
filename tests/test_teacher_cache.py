"""Teacher outputs are computed once per (teacher, data, seed, epoch), reused at any T and alpha."""

from __future__ import annotations

import threading
import time

import pytest
import torch

import kdcore.engine as engine
from kdcore.augment import epoch_views, train_batch
from kdcore.checkpoints import load_model
from kdcore.execute import execute_run
from kdcore.runs import RunSpec, create_run
from kdcore.status import read_status
from kdcore.teacher_cache import (
    CACHE_FOLDER,
    TeacherOutputs,
    cache_dir_for,
    cached_epoch_files,
)

CPU = torch.device("cpu")


def never_called(*args, **kwargs):
    raise AssertionError("the teacher ran although its outputs were cached")


@pytest.fixture
def teacher(teacher_file):
    model, _ = load_model(teacher_file)
    return model


@pytest.fixture
def images(synthetic_train):
    return synthetic_train.images[:48]


# --- TeacherOutputs directly --------------------------------------------------------------------


def test_logits_are_keyed_by_image_index_and_equal_an_online_forward(teacher, images, tmp_path):
    outputs = TeacherOutputs(teacher, images, seed=3, cache_dir=tmp_path / "cache", batch_size=20)
    logits = outputs.epoch_logits(1, threading.Event())
    assert logits.shape == (48, 10) and logits.dtype == torch.float32
    assert (tmp_path / "cache" / "epoch-0001.pt").is_file()

    shuffled = torch.randperm(48, generator=torch.Generator().manual_seed(0))[:16]
    views = epoch_views(len(images), seed=3, epoch=1).select(shuffled)
    with torch.inference_mode(), engine.autocast_for(torch.device("cpu")):  # as the cache runs it
        online = outputs.teacher(train_batch(images[shuffled], views)).float()
    torch.testing.assert_close(logits[shuffled], online, rtol=1e-5, atol=1e-5)


def test_flip_tta_averages_the_teacher_on_each_view_and_on_its_mirror(teacher, images):
    plain = TeacherOutputs(teacher, images, seed=3, cache_dir=None)
    flipped = TeacherOutputs(teacher, images, seed=3, cache_dir=None, tta="flip")
    logits = flipped.epoch_logits(1, threading.Event())
    views = epoch_views(len(images), seed=3, epoch=1)
    with torch.inference_mode(), engine.autocast_for(torch.device("cpu")):
        mirrored = plain.teacher(train_batch(images, views).flip(3)).float()
    expected = (plain.epoch_logits(1, threading.Event()) + mirrored) / 2
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(logits, plain.epoch_logits(1, threading.Event()))
    with pytest.raises(ValueError, match="flip"):
        TeacherOutputs(teacher, images, seed=3, cache_dir=None, tta="mirror")


def test_a_second_reader_gets_the_stored_logits_without_a_forward(
    teacher, images, tmp_path, monkeypatch
):
    first = TeacherOutputs(teacher, images, seed=0, cache_dir=tmp_path)
    computed = first.epoch_logits(0, threading.Event())
    monkeypatch.setattr(TeacherOutputs, "compute", never_called)
    second = TeacherOutputs(teacher, images, seed=0, cache_dir=tmp_path)
    assert torch.equal(second.epoch_logits(0, threading.Event()), computed)
    summary = second.summary()
    assert summary["epochs_from_cache"] == 1 and summary["epochs_computed"] == 0


def test_each_epoch_has_its_own_views(teacher, images, tmp_path):
    outputs = TeacherOutputs(teacher, images, seed=0, cache_dir=tmp_path)
    epoch0 = outputs.epoch_logits(0, threading.Event())
    epoch1 = outputs.epoch_logits(1, threading.Event())
    assert not torch.equal(epoch0, epoch1)
    assert outputs.summary()["epochs_computed"] == 2


def test_damaged_cache_file_is_recomputed(teacher, images, tmp_path):
    original = TeacherOutputs(teacher, images, seed=0, cache_dir=tmp_path).epoch_logits(
        0, threading.Event()
    )
    (tmp_path / "epoch-0000.pt").write_bytes(b"\x00garbage" * 50)
    again = TeacherOutputs(teacher, images, seed=0, cache_dir=tmp_path)
    logits = again.epoch_logits(0, threading.Event())
    assert again.forward_batches > 0 and again.summary()["epochs_computed"] == 1
    torch.testing.assert_close(logits, original)
    stored = torch.load(tmp_path / "epoch-0000.pt", weights_only=True)
    torch.testing.assert_close(stored["logits"], original)


def test_cache_entry_for_another_image_count_is_recomputed(teacher, images, tmp_path):
    TeacherOutputs(teacher, images[:10], seed=0, cache_dir=tmp_path).epoch_logits(
        0, threading.Event()
    )
    outputs = TeacherOutputs(teacher, images, seed=0, cache_dir=tmp_path)
    assert outputs.epoch_logits(0, threading.Event()).shape[0] == len(images)
    assert outputs.summary()["epochs_computed"] == 1


def test_stop_during_the_teacher_pass_returns_none_and_stores_nothing(teacher, images, tmp_path):
    stop = threading.Event()
    progress = []

    def on_progress(done, total):
        progress.append((done, total))
        stop.set()

    outputs = TeacherOutputs(teacher, images, seed=0, cache_dir=tmp_path / "cache", batch_size=16)
    assert outputs.epoch_logits(0, stop, on_progress) is None
    assert progress == [(16, 48)]
    cache = tmp_path / "cache"
    assert list(cache.glob("epoch-*.pt")) == []  # a lock file may stay; no entry does
    assert outputs.summary()["epochs_computed"] == 0


def test_parallel_runs_compute_an_epoch_once_and_the_others_read_it(teacher, images, tmp_path):
    computed = []
    outputs = [TeacherOutputs(teacher, images, seed=0, cache_dir=tmp_path) for _ in range(3)]
    for each in outputs:
        real = each.compute

        def counting(*args, real=real, **kwargs):
            computed.append(1)
            time.sleep(0.3)  # long enough for the others to find the epoch being computed
            return real(*args, **kwargs)

        each.compute = counting
    results = [None] * 3

    def fetch(k):
        results[k] = outputs[k].epoch_logits(0, threading.Event())

    threads = [threading.Thread(target=fetch, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(computed) == 1
    assert all(torch.equal(result, results[0]) for result in results)
    assert sorted(o.epochs_computed for o in outputs) == [0, 0, 1]


def test_without_a_cache_dir_nothing_is_written(teacher, images, tmp_path):
    outputs = TeacherOutputs(teacher, images[:8], seed=0, cache_dir=None)
    assert outputs.epoch_logits(0, threading.Event()).shape == (8, 10)
    assert list(tmp_path.rglob("epoch-*.pt")) == []


def test_cache_folder_depends_on_teacher_content_and_data_key(tmp_path, make_teacher_checkpoint):
    first = make_teacher_checkpoint(tmp_path / "a" / "teacher.pt", seed=0)
    other = make_teacher_checkpoint(tmp_path / "b" / "teacher.pt", seed=1)
    key = ("data", 0, 100, 0)  # fingerprint, validation split, images, seed
    assert cache_dir_for(first, *key).parent == first.parent / CACHE_FOLDER
    assert cache_dir_for(first, *key).name.endswith("-data-n100-seed0")  # the key of older runs
    assert cache_dir_for(first, "data", 10, 100, 0).name.endswith("-data-val10-n100-seed0")
    for changed in (("other", 0, 100, 0), ("data", 0, 99, 0), ("data", 0, 100, 1)):
        assert cache_dir_for(first, *changed) != cache_dir_for(first, *key)
    assert cache_dir_for(first, *key).name != cache_dir_for(other, *key).name
    assert cache_dir_for(first, *key, tta="flip").name.endswith("-data-n100-seed0-flip")


# --- through runs: the cache serves distillations at other T and alpha --------------------------


class ViewRecorder:
    """Wraps the engine's train_batch and keeps every student input it builds."""

    def __init__(self):
        self.inputs: list[torch.Tensor] = []

    def __call__(self, images, views, *args, **kwargs):
        batch = train_batch(images, views, *args, **kwargs)
        self.inputs.append(batch.clone())
        return batch


def distill(root, teacher_file, monkeypatch, **overrides):
    settings = {"role": "distill", "data": "synthetic", "teacher": str(teacher_file), "epochs": 2,
                "train_subset": 64, "batch_size": 32, "seed": 0}  # fmt: skip
    run_id = create_run(RunSpec(**{**settings, **overrides}), root)
    recorder = ViewRecorder()
    monkeypatch.setattr(engine, "train_batch", recorder)
    execute_run(run_id, root, device="cpu")
    return read_status(root / run_id), recorder.inputs


def test_second_distillation_reuses_the_cache_and_sees_the_same_views(
    tmp_path, teacher_file, monkeypatch, fast_synthetic
):
    root = tmp_path / "runs"
    status, first_inputs = distill(root, teacher_file, monkeypatch, temperature=2.0, alpha=0.5)
    assert status.state == "finished"
    assert status.teacher_cache["epochs_computed"] == 2
    cached = [path.name for path in cached_epoch_files(teacher_file)]
    assert cached == ["epoch-0000.pt", "epoch-0001.pt"]

    monkeypatch.setattr(TeacherOutputs, "compute", never_called)
    status, second_inputs = distill(root, teacher_file, monkeypatch, temperature=4.0, alpha=0.9)
    assert status.state == "finished"
    assert status.teacher_cache["epochs_from_cache"] == 2
    assert status.teacher_cache["epochs_computed"] == 0
    assert len(second_inputs) == len(first_inputs) == 4
    for first, second in zip(first_inputs, second_inputs, strict=True):
        assert torch.equal(first, second)


def test_distillation_with_another_seed_does_not_reuse_the_cache(
    tmp_path, teacher_file, monkeypatch, fast_synthetic
):
    root = tmp_path / "runs"
    distill(root, teacher_file, monkeypatch, epochs=1, seed=0)
    status, _ = distill(root, teacher_file, monkeypatch, epochs=1, seed=1)
    assert status.teacher_cache["epochs_computed"] == 1
    assert status.teacher_cache["epochs_from_cache"] == 0
    assert len([p for p in (teacher_file.parent / CACHE_FOLDER).iterdir() if p.is_dir()]) == 2


def test_distillation_from_the_flip_averaged_teacher_keeps_its_own_cache_and_learns_from_it(
    tmp_path, teacher_file, monkeypatch, fast_synthetic
):
    root = tmp_path / "runs"
    distill(root, teacher_file, monkeypatch, epochs=1)
    status, _ = distill(root, teacher_file, monkeypatch, epochs=1, teacher_tta="flip")
    assert status.state == "finished"
    assert status.teacher_cache["epochs_computed"] == 1  # not the plain teacher's outputs
    folders = [p for p in (teacher_file.parent / CACHE_FOLDER).iterdir() if p.is_dir()]
    flipped = [p for p in folders if p.name.endswith("-flip")]
    assert len(folders) == 2 and len(flipped) == 1
    (plain,) = set(folders) - set(flipped)
    averaged = torch.load(flipped[0] / "epoch-0000.pt", weights_only=True)["logits"]
    on_views = torch.load(plain / "epoch-0000.pt", weights_only=True)["logits"]
    assert averaged.shape == on_views.shape and not torch.allclose(averaged, on_views)


def test_distillation_with_a_validation_split_keeps_its_own_cache(
    tmp_path, teacher_file, monkeypatch, fast_synthetic
):
    root = tmp_path / "runs"
    distill(root, teacher_file, monkeypatch, epochs=1, train_subset=None)
    status, _ = distill(root, teacher_file, monkeypatch, epochs=1, train_subset=None, val_split=10)
    assert status.teacher_cache["epochs_computed"] == 1
    folders = sorted(p.name for p in (teacher_file.parent / CACHE_FOLDER).iterdir() if p.is_dir())
    assert len(folders) == 2 and sum("-val10-" in name for name in folders) == 1

"""Checkpoints round-trip, are written atomically, and refuse anything they did not write."""

from __future__ import annotations

import collections

import pytest
import torch

from kdcore.checkpoints import (
    FORMAT,
    CheckpointError,
    atomic_torch_save,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from kdcore.models import SmallCNN

CLASSES = [f"c{k}" for k in range(10)]


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN().eval()
    path = tmp_path / "run" / "best.pt"
    save_checkpoint(path, model, "smallcnn", CLASSES, {"epoch": 3, "test_acc": 0.5})
    return path, model


def test_round_trip_rebuilds_the_same_model(saved):
    path, model = saved
    loaded, payload = load_model(path)
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert not loaded.training
    assert payload["format"] == FORMAT and payload["arch"] == "smallcnn"
    assert payload["classes"] == CLASSES and payload["num_classes"] == 10
    assert payload["meta"] == {"epoch": 3, "test_acc": 0.5}


def test_checkpoint_loads_with_weights_only(saved):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    assert set(payload["state_dict"]) == set(SmallCNN().state_dict())


def test_save_leaves_no_temporary_file(saved):
    path, _ = saved
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(saved):
    path, _ = saved
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises for a lambda
        atomic_torch_save({"not saveable": lambda: None}, path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]


def test_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "absent.pt")


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_model(path)


def test_truncated_checkpoint_is_refused(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_model(truncated)


@pytest.mark.parametrize(
    "foreign",
    [{"weights": torch.zeros(3)}, torch.zeros(3), collections.OrderedDict(a=torch.ones(1))],
    ids=["dict", "tensor", "state_dict"],
)
def test_foreign_torch_files_are_refused(tmp_path, foreign):
    path = tmp_path / "foreign.pt"
    torch.save(foreign, path)
    with pytest.raises(CheckpointError, match="not a kdcore checkpoint"):
        read_checkpoint(path)


def test_pickled_objects_are_refused_without_running_them(tmp_path):
    path = tmp_path / "module.pt"
    torch.save({"format": FORMAT, "version": 1, "model": SmallCNN()}, path)
    with pytest.raises(CheckpointError, match="not a safe PyTorch file"):
        load_model(path)


def test_other_checkpoint_version_is_refused(saved):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "version": 99}, path)
    with pytest.raises(CheckpointError, match="version 99"):
        load_model(path)


def test_weights_that_do_not_fit_the_architecture_are_refused(saved):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "arch": "resnet18"}, path)
    with pytest.raises(CheckpointError, match="does not fit its architecture"):
        load_model(path)


def test_a_checkpoint_of_the_first_cifarnet_says_to_train_again(tmp_path):
    path = tmp_path / "old.pt"
    first_cifarnet = {
        "features.0.weight": torch.zeros(32, 3, 3, 3),
        "classifier.bias": torch.zeros(10),
    }
    save_checkpoint(path, SmallCNN(), "cifarnet", CLASSES)
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "state_dict": first_cifarnet}, path)
    with pytest.raises(CheckpointError, match="first CifarNet.*train the teacher again"):
        load_model(path)


def test_a_resnet_keeps_its_stem_through_a_checkpoint(tmp_path):
    from kdcore.models import build_model

    for stem, kernel in (("cifar", 3), ("imagenet", 7)):
        path = tmp_path / f"{stem}.pt"
        save_checkpoint(path, build_model("resnet18", 10, stem), "resnet18", CLASSES, stem=stem)
        model, payload = load_model(path)
        assert payload["stem"] == stem and model.conv1.kernel_size == (kernel, kernel)


def test_a_resnet_checkpoint_saved_before_stems_loads_with_the_imagenet_stem(tmp_path):
    from kdcore.models import build_model

    path = tmp_path / "legacy.pt"
    save_checkpoint(path, build_model("resnet18", 10, "imagenet"), "resnet18", CLASSES)
    payload = torch.load(path, weights_only=True)
    del payload["stem"]
    torch.save(payload, path)
    model, _ = load_model(path)
    assert model.conv1.kernel_size == (7, 7)

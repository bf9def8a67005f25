"""Checkpoint loading under fuzzing: any file that is not a checkpoint is one ``CheckpointError``, a
damaged one is "corrupt checkpoint", and never another exception or torch's own text."""

from __future__ import annotations

import io
import pickle
import random
import zipfile
from pathlib import Path

import pytest
import torch

from blender_instseg.ml.checkpoint import (CHECKSUM_KEY, FORMAT, CheckpointError, load_checkpoint, load_model,
                                           save_checkpoint, tensor_checksum)
from blender_instseg.ml.models import architecture, build_model

CATS = [{"id": 1, "name": "cube"}, {"id": 2, "name": "ball"}]


def _payload() -> dict:
    return {"model": {"w": torch.arange(6, dtype=torch.float32), "b": torch.ones(2, 3)},
            "model_config": {"arch": "solov2"}, "categories": CATS, "history": [{"step": 3}], "step": 3}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, _payload())
    return path.read_bytes()


def _expect_refused(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert "\n" not in text and "weights_only" not in text and "Traceback" not in text
    assert "is not a checkpoint of this project" in text or text.startswith("corrupt checkpoint"), text
    return text


def test_random_and_truncated_files_are_refused(tmp_path: Path, tiny: bytes) -> None:
    rng = random.Random(24)
    blobs = [b"", b"PK", b"PK\x03\x04", tiny[:30]]
    blobs += [rng.randbytes(rng.randint(1, 4096)) for _ in range(120)]
    blobs += [tiny[:cut] for cut in sorted(rng.sample(range(1, len(tiny)), 120))]
    blobs += [b"PK\x03\x04" + rng.randbytes(rng.randint(10, 500)) for _ in range(30)]
    for i, blob in enumerate(blobs):
        path = tmp_path / f"f{i}.pt"
        path.write_bytes(blob)
        _expect_refused(path)


def test_wrong_content_is_refused(tmp_path: Path) -> None:
    """Readable files that are something else: other pickles, other torch files, foreign zips, wrong fields."""
    cases: dict[str, object] = {
        "list": [torch.zeros(2)], "tensor": torch.zeros(3), "other_format": {"format": "x", "model": {}},
        "no_format": {"state_dict": {"w": torch.zeros(2)}}, "no_model": {"format": FORMAT, "model_config": {},
                                                                         "categories": CATS},
        "model_not_tensors": {**_payload(), "format": FORMAT, "model": {"w": [1, 2]}},
        "model_config_list": {**_payload(), "format": FORMAT, "model_config": [1]},
        "categories_no_id": {**_payload(), "format": FORMAT, "categories": [{"name": "x"}]},
        "categories_empty": {**_payload(), "format": FORMAT, "categories": []},
        "history_dict": {**_payload(), "format": FORMAT, "history": {"a": 1}},
    }
    for name, obj in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(obj, path)
        _expect_refused(path)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"format": FORMAT, "model": {}}))
    _expect_refused(plain)
    code = tmp_path / "code.pt"
    torch.save({"format": FORMAT, "hook": random.Random}, code)  # a class: weights_only refuses to build it
    assert "was not loaded" in _expect_refused(code)
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("notes.txt", "hello")
    _expect_refused(foreign)
    _expect_refused(tmp_path)  # a folder without last.pt
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_flipped_bits_are_corrupt_never_silently_loaded(tmp_path: Path, tiny: bytes) -> None:
    """A flipped bit anywhere either refuses the file or leaves its content exactly as saved
    (a bit in a zip header field nobody reads, such as a time stamp)."""
    rng = random.Random(7)
    saved = torch.load(io.BytesIO(tiny), weights_only=True)
    corrupt = 0
    for i in range(150):
        data = bytearray(tiny)
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
        path = tmp_path / f"flip{i}.pt"
        path.write_bytes(bytes(data))
        try:
            got = load_checkpoint(path)
        except CheckpointError as exc:
            corrupt += "corrupt checkpoint" in str(exc)
            continue
        assert tensor_checksum(got) == tensor_checksum(saved) and got["history"] == saved["history"], pos
    assert corrupt > 30


def test_tensor_checksum_catches_a_changed_tensor_with_valid_zip(tmp_path: Path, tiny: bytes) -> None:
    ckpt = torch.load(io.BytesIO(tiny), weights_only=True)
    ckpt["model"]["w"][2] += 1e-3  # rewritten by torch.save: the zip's CRCs are right again
    path = tmp_path / "edited.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="corrupt checkpoint.*checksum"):
        load_checkpoint(path)


def test_checkpoints_without_a_checksum_still_load(tmp_path: Path) -> None:
    """Checkpoints written before the checksum existed (plain torch.save of the payload) load as before."""
    cfg = architecture("solov2")[0](num_classes=2, fpn_channels=32)
    model = build_model(cfg.to_dict())
    old = tmp_path / "old.pt"
    torch.save({"format": FORMAT, "model": model.state_dict(), "model_config": cfg.to_dict(), "categories": CATS}, old)
    loaded, ckpt = load_model(old)
    assert CHECKSUM_KEY not in ckpt
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    new = tmp_path / "new.pt"
    save_checkpoint(new, ckpt)
    assert load_checkpoint(new)[CHECKSUM_KEY].startswith("sha256:")

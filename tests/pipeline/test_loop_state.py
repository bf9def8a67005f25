"""loop.json: every finished stage is recorded, a failed or killed loop continues where it stopped,
new rounds build on old ones, and a rerun with other settings is refused.

The stages' child processes are replaced by a stand-in that writes what each child would write
(the real processes run in test_loop_e2e.py, and are killed and continued in test_loop_kill.py;
stopping the loop by stdin and signals is in test_loop_stop.py); the loop logic, the ranking, the
plan and the COCO concatenation are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blender_instseg.core.plan import read_plan
from blender_instseg.pipeline import loop as loop_mod
from blender_instseg.pipeline.loop import Loop, LoopConfig, LoopError
from blender_instseg.pipeline.stages import StageError

CATS = [{"id": 1, "name": "cube"}]
SQUARE = [[2.0, 2.0, 10.0, 2.0, 10.0, 10.0, 2.0, 10.0]]


def coco(n: int, seed0: int) -> dict:
    images = [{"id": i + 1, "file_name": f"images/{i:06d}.png", "width": 16, "height": 16, "seed": seed0 + i,
               "index": i} for i in range(n)]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "segmentation": SQUARE, "area": 64.0,
             "bbox": [2, 2, 8, 8], "iscrowd": 0} for i in range(n)]
    return {"images": images, "annotations": anns, "categories": CATS}


class FakeChildren:
    """Stands in for ``run_stage``: records the calls and writes each child's outputs."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail_on = fail_on

    def __call__(self, name, argv, on_event=None, *, env=None, cwd=None, stop=None):  # noqa: ANN001
        self.calls.append(name)
        argv = [str(a) for a in argv]

        def arg(flag: str) -> str:
            return argv[argv.index(flag) + 1]

        out = Path(arg("--out"))
        out.mkdir(parents=True, exist_ok=True)
        if name == self.fail_on:
            if name == "train":
                (out / "last.pt").write_bytes(b"half")  # killed after a checkpoint
            raise StageError(f"stage '{name}' failed: boom")
        if name in ("evaluate", "heldout"):
            (out / "metrics.json").write_text(json.dumps({"segm": {"AP": 0.01 * len(self.calls)}}))
            (out / "predictions.json").write_text("[]")
            return {"predictions": str(out / "predictions.json")}
        if name == "generate":
            n = sum(e.count for e in read_plan(arg("--variants-of"))) if "--variants-of" in argv \
                else int(arg("--num-images"))
            (out / "annotations.json").write_text(json.dumps(coco(n, 9000)))
            return {"images": n}
        if name == "train":
            (out / "last.pt").write_bytes(b"weights")
            return {"checkpoint": str(out / "last.pt"), "step": int(arg("--steps"))}
        raise AssertionError(name)


@pytest.fixture()
def setup(tmp_path: Path) -> LoopConfig:
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "config.json").write_text(json.dumps({"seed": 3, "categories": CATS, "generator": {}}))
    (ds / "annotations_train.json").write_text(json.dumps(coco(4, 100)))
    (ds / "annotations_val.json").write_text(json.dumps(coco(3, 200)))
    held = tmp_path / "held"
    held.mkdir()
    (held / "annotations.json").write_text(json.dumps(coco(2, 300)))
    base = tmp_path / "base"
    base.mkdir()
    (base / "last.pt").write_bytes(b"start")
    (base / "config.json").write_text(json.dumps({"train_config": {"image_size": 64, "batch_size": 2, "lr": 0.001}}))
    return LoopConfig(data=str(ds), run=str(tmp_path / "run"), rounds=1, budget=3, steps_per_round=5,
                      heldout=str(held), init=str(base / "last.pt"), per_seed=2).check()


def events() -> tuple[list, object]:
    got: list = []
    return got, lambda event, **data: got.append((event, data))


def test_a_failed_round_continues_at_the_failed_stage(setup: LoopConfig, monkeypatch) -> None:
    failing = FakeChildren(fail_on="train")
    monkeypatch.setattr(loop_mod, "run_stage", failing)
    with pytest.raises(StageError, match="boom"):
        Loop(setup, emit=events()[1]).run()
    assert failing.calls == ["heldout", "evaluate", "generate", "train"]
    state = json.loads((Path(setup.run) / "loop.json").read_text())
    assert set(state["rounds"][0]["stages"]) == {"evaluate", "plan", "generate", "combine"}
    assert state["rounds"][0]["status"] == "running"

    ok = FakeChildren()
    monkeypatch.setattr(loop_mod, "run_stage", ok)
    got, emit = events()
    result = Loop(setup, emit=emit).run()
    assert ok.calls == ["train", "heldout"]  # nothing finished is redone
    assert result["rounds"] == 1 and not result["stopped"]
    assert result["checkpoint"] == str(Path(setup.run) / "round_1" / "run" / "last.pt")
    state = json.loads((Path(setup.run) / "loop.json").read_text())
    rd = state["rounds"][0]
    assert rd["status"] == "done" and rd["images_added"] == 3
    assert rd["heldout_before"] == state["start"]["metrics"] and rd["heldout_after"]["mask_AP"] is not None
    # the plan: ceil(3/2) = 2 worst val seeds (all equally bad here: ties go by image id), with their error terms
    plan = rd["stages"]["plan"]["plan"]
    assert [(p["seed"], p["count"], p["first"]) for p in plan] == [(200, 2, 0), (201, 1, 0)]
    assert plan[0]["why"]["n_missed"] == 1 and plan[0]["why"]["score"] == 1.0
    # the half-trained round continues its own run instead of starting over
    train_cmd = rd["stages"]["train"]["command"]
    assert "--resume" in train_cmd and "--init" not in train_cmd
    combined = json.loads((Path(setup.run) / "round_1" / "train" / "annotations_train.json").read_text())
    assert len(combined["images"]) == 4 + 3
    assert ("eval", {"step": 1, "metrics": {"round": 1, **{f"heldout_{k}": v for k, v in rd["heldout_after"].items()}}}) in got
    assert any(e == "progress" and d["total"] == len(loop_mod.STAGES) for e, d in got)


def test_more_rounds_build_on_the_last_one_and_settings_must_match(setup: LoopConfig, monkeypatch) -> None:
    fake = FakeChildren()
    monkeypatch.setattr(loop_mod, "run_stage", fake)
    Loop(setup, emit=events()[1]).run()
    setup.rounds = 2
    fake.calls.clear()
    result = Loop(setup, emit=events()[1]).run()
    assert fake.calls == ["evaluate", "generate", "train", "heldout"]
    state = json.loads((Path(setup.run) / "loop.json").read_text())
    r1, r2 = state["rounds"]
    assert r2["checkpoint_before"] == r1["checkpoint_after"]
    # training: from the current checkpoint, with the starting run's recipe, on train split + new images
    for rd, init in ((r1, str(Path(setup.init).resolve())), (r2, r1["checkpoint_after"])):
        cmd = rd["stages"]["train"]["command"]
        assert cmd[cmd.index("--init") + 1] == init and cmd[cmd.index("--image-size") + 1] == "64"
        assert cmd[cmd.index("--steps") + 1] == "5" and cmd[cmd.index("--data") + 1] == rd["stages"]["combine"]["data"]
    assert r2["heldout_before"] == r1["heldout_after"]
    # the same seeds are still the worst: their new variants start after round 1's
    assert [(p["seed"], p["first"]) for p in r2["stages"]["plan"]["plan"]] == [(200, 2), (201, 1)]
    combined = json.loads((Path(setup.run) / "round_2" / "train" / "annotations_train.json").read_text())
    assert len(combined["images"]) == 4 + 3 + 3
    assert len(result["heldout_mask_AP"]) == 3

    for change in ({"strategy": "random"}, {"budget": 4}):
        other = LoopConfig(**{**setup.__dict__, **change})
        with pytest.raises(LoopError, match=f"other settings \\({next(iter(change))}"):
            Loop(other)


def test_random_strategy_renders_fresh_scenes(setup: LoopConfig, monkeypatch) -> None:
    fake = FakeChildren()
    monkeypatch.setattr(loop_mod, "run_stage", fake)
    setup.strategy = "random"
    Loop(setup, emit=events()[1]).run()
    state = json.loads((Path(setup.run) / "loop.json").read_text())
    gen = state["rounds"][0]["stages"]["generate"]["command"]
    assert "--variants-of" not in gen and gen[gen.index("--num-images") + 1] == "3"
    assert state["rounds"][0]["stages"]["plan"]["plan"] == []


def test_bad_settings_are_one_line_errors(setup: LoopConfig, tmp_path: Path) -> None:
    with pytest.raises(LoopError, match="no annotations_train.json"):
        LoopConfig(data=str(tmp_path / "held"), run=str(tmp_path / "r")).check()
    with pytest.raises(LoopError, match="starting checkpoint not found"):
        LoopConfig(data=setup.data, run=str(tmp_path / "r")).check()
    with pytest.raises(LoopError, match="--budget must be >= 1"):
        LoopConfig(**{**setup.__dict__, "budget": 0}).check()

"""Snapshots during training (``--snapshot-steps``): model folders that equal shorter runs, survive
interrupted runs unchanged, and register and load like any model folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from latentzoo.cli import main
from latentzoo.errors import UserError
from latentzoo.fileio import sha256_file
from latentzoo.hub import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from latentzoo.registry import load_registry
from latentzoo.training import TrainConfig, train
from latentzoo.training import trainer as trainer_module
from latentzoo.weights import from_pretrained

ARGS = ["--arch", "test_resnet", "--size", "32", "--batch-size", "16", "--workers", "0", "--quiet"]
FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)


def _config(data, out, **kw) -> TrainConfig:
    return TrainConfig(**{**dict(data=str(data), objective="distance-translation", out=str(out), arch="test_resnet",
                                 size=32, batch_size=16, workers=0, progress=False, steps=6, checkpoint_every=3,
                                 eval_every=3, eval_images=16, snapshot_steps=(2, 4, 6)), **kw})


@pytest.fixture(scope="module")
def ref(tiny_dataset, tmp_path_factory) -> Path:
    """An uninterrupted 6-step run with snapshots at steps 2, 4 and 6 (checkpoints at 3 and 6)."""
    return train(_config(tiny_dataset.root, tmp_path_factory.mktemp("snapshots") / "ref"))


def _same_files(a: Path, b: Path) -> bool:
    return all((a / f).read_bytes() == (b / f).read_bytes() for f in FILES)


def _metrics(folder: Path) -> dict:
    return json.loads((folder / CONFIG_NAME).read_text())["latentzoo"]["extra"]["metrics"]


def _rows(path: Path) -> list[dict]:
    """The rows of a log file without its timing column."""
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "images_per_s"} for row in csv.DictReader(f)]


def test_a_snapshot_is_the_model_folder_of_a_run_that_stops_there(tiny_dataset, ref, tmp_path, capsys):
    out = ref
    snaps = {n: out / "snapshots" / f"step-{n}" for n in (2, 4, 6)}
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step-2", "step-4", "step-6"]
    # a run that stops at step 4 writes the same folder, byte for byte (weights, metrics, card)
    assert main(["train", "--data", str(tiny_dataset.root), "--objective", "distance-translation", "--steps", "4",
                 "--out", str(tmp_path / "short"), *ARGS]) == 0
    assert _same_files(snaps[4], tmp_path / "short")
    assert _same_files(snaps[6], out)
    assert [json.loads((snaps[n] / CONFIG_NAME).read_text())["latentzoo"]["extra"]["steps"] for n in snaps] == [2, 4, 6]
    weights = [load_file(str(snaps[n] / WEIGHTS_NAME)) for n in (2, 4)]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # test metrics: the full test split, as `latentzoo evaluate` computes them; eval.csv logs them
    assert _metrics(snaps[2])["images"] == 64
    capsys.readouterr()
    assert main(["evaluate", str(snaps[4]), "--data", str(tiny_dataset.root), "--workers", "0"]) == 0
    again = json.loads(capsys.readouterr().out)
    for key in ("loss", "z_r2", "x_rmse", "images"):
        assert again[key] == pytest.approx(_metrics(snaps[4])[key], rel=1e-4, abs=1e-6)
    rows = _rows(out / "train" / "eval.csv")
    assert [r["step"] for r in rows] == ["2", "3", "4", "6"]
    assert float(rows[2]["loss"]) == _metrics(snaps[4])["loss"]


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing in the trainer catches it, so the files stay as a kill leaves them."""


def test_interrupted_runs_resume_to_the_same_snapshots_without_rewriting_them(tiny_dataset, ref, tmp_path,
                                                                               monkeypatch):
    run = tmp_path / "run"
    real_write, real_save = trainer_module.Trainer._write_model, trainer_module.save_checkpoint

    def dies_in_snapshot_4(self, folder, metrics):  # its weights written, the rest not
        if folder.name == ".step-4.tmp":
            folder.mkdir(parents=True)
            (folder / WEIGHTS_NAME).write_bytes(b"partial")
            raise _Killed()
        return real_write(self, folder, metrics)

    def dies_at_checkpoint_6(path, state, previous_step):
        if state["step"] == 6:
            raise _Killed()
        real_save(path, state, previous_step)

    # 1: killed while writing snapshot 4: no partial step-4 is visible
    monkeypatch.setattr(trainer_module.Trainer, "_write_model", dies_in_snapshot_4)
    with pytest.raises(_Killed):
        train(_config(tiny_dataset.root, run))
    monkeypatch.undo()
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [".step-4.tmp", "step-2"]
    # 2: resumed from step 3, writes snapshot 4, killed before the checkpoint of step 6
    monkeypatch.setattr(trainer_module, "save_checkpoint", dies_at_checkpoint_6)
    with pytest.raises(_Killed):
        train(_config(tiny_dataset.root, run), resume=True)
    monkeypatch.undo()
    kept = (run / "snapshots" / "step-4" / WEIGHTS_NAME).stat()
    # 3: resumed from step 3 again: re-trains step 4 and leaves its snapshot alone
    train(_config(tiny_dataset.root, run), resume=True)
    again = (run / "snapshots" / "step-4" / WEIGHTS_NAME).stat()
    assert (again.st_ino, again.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)

    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step-2", "step-4", "step-6"]
    for n in (2, 4, 6):
        assert _same_files(run / "snapshots" / f"step-{n}", ref / "snapshots" / f"step-{n}"), n
    assert _same_files(run, ref)
    for log in ("log.csv", "eval.csv"):
        assert _rows(run / "train" / log) == _rows(ref / "train" / log)
    # a snapshot behind the checkpoint cannot be made by resuming
    with pytest.raises(UserError, match="cannot snapshot step 1: the run resumes from step 6"):
        train(_config(tiny_dataset.root, run, snapshot_steps=(1, 6)), resume=True)


def test_snapshot_steps_outside_the_run_are_refused(tiny_dataset, tmp_path, capsys):
    for bad in ("0", "5"):
        assert main(["train", "--data", str(tiny_dataset.root), "--objective", "distance", "--steps", "4",
                     "--snapshot-steps", "2", bad, "--out", str(tmp_path / "o"), *ARGS]) == 1
        assert capsys.readouterr().err.strip().endswith(f"train: error: --snapshot-steps {bad} is outside 1..4 "
                                                        f"(--steps)")
    assert not (tmp_path / "o").exists()


def test_snapshots_register_and_load_like_any_model_folder(tiny_dataset, tmp_path):
    out = train(_config(tiny_dataset.root, tmp_path / "run", arch="r18", objective="distance", steps=2,
                        batch_size=8, snapshot_steps=(1,)))
    snapshot = out / "snapshots" / "step-1"
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump({"version": 1, "families": [{
        "id": "snap-distance-r18-step1", "arch": "r18", "objective": "distance", "seed": 0, "dataset": "tiny",
        "weights": {"folder": {"path": "run/snapshots/step-1", "sha256": sha256_file(snapshot / WEIGHTS_NAME)}},
        "layers": {"V1": "layer1", "V2": "layer2", "V4": "layer3", "IT": "layer4"}}]}))
    by_id = from_pretrained("snap-distance-r18-step1", registry=load_registry([registry]))
    by_folder = from_pretrained(snapshot)
    stored = load_file(str(snapshot / WEIGHTS_NAME))
    final = load_file(str(out / WEIGHTS_NAME))
    assert by_id.config.id == "snap-distance-r18-step1" and by_folder.config.extra["steps"] == 1
    for net in (by_id, by_folder):
        state = net.state_dict()
        assert state.keys() == stored.keys() and all(torch.equal(state[k], stored[k]) for k in stored)
    assert any(not torch.equal(stored[k], final[k]) for k in stored)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(by_id.eval()(x), by_folder.eval()(x))

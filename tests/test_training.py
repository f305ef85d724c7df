"""End-to-end training: model folder, evaluate, bad input, SIGKILL + resume, DDP via torchrun.

Mechanics tests use timm's tiny ``test_resnet`` (0.4 M parameters) at 32 px so they stay fast on
two CPU cores; the learning test (tests/test_training_learning.py) trains a real ResNet-18.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from latentzoo.cli import main
from latentzoo.training import trainer as trainer_module

ARGS = ["--arch", "test_resnet", "--size", "32", "--batch-size", "16", "--workers", "0", "--quiet"]


def _env() -> dict:
    """Deterministic single-threaded CPU subprocesses."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONHASHSEED": "0"}


def _train_cmd(data, out, *extra) -> list[str]:
    return [sys.executable, "-m", "latentzoo.cli", "train", "--data", str(data), "--objective", "distance-rotation",
            "--out", str(out), *ARGS, *extra]


def _log(path: Path, columns=("step", "loss", "batch_crc32")) -> list[tuple]:
    with open(path) as f:
        return [tuple(row[c] for c in columns) for row in csv.DictReader(f)]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_train_writes_a_model_folder_and_evaluate_reproduces_its_metrics(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--data", str(tiny_dataset.root), "--objective", "distance-translation", "--steps", "6",
               "--checkpoint-every", "3", "--eval-every", "3", "--eval-images", "16", "--out", str(out), *ARGS])
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    block = config["latentzoo"]
    assert config["architecture"] == "test_resnet" and config["num_classes"] == 3
    assert block["layout"] == [{"task": "distance", "start": 0, "stop": 1},
                               {"task": "translation", "start": 1, "stop": 3}]
    train = tiny_dataset.latents("train")
    assert block["normalisation"]["mean"]["z"] == pytest.approx(train["z"].mean())
    assert block["normalisation"]["std"]["x"] == pytest.approx(train["x"].std(ddof=0))
    extra = block["extra"]
    assert extra["seed"] == 0 and extra["steps"] == 6 and len(extra["dataset_sha256"]) == 64
    metrics = extra["metrics"]
    assert metrics["images"] == 64 and metrics["performance"] == pytest.approx(-metrics["loss"])
    assert metrics["loss"] == pytest.approx((metrics["loss_distance"] + metrics["loss_translation"]) / 2, rel=1e-4)
    assert {"z_r2", "z_rmse", "x_r2", "y_rmse"} <= set(metrics)
    assert "objective-distance-translation" in (out / "README.md").read_text()
    assert [r[0] for r in _log(out / "train" / "log.csv")] == ["1", "2", "3", "4", "5", "6"]
    assert [r[0] for r in _log(out / "train" / "eval.csv", ("step",))] == ["3", "6"]
    assert list((out / "train" / "tensorboard").glob("events.out.tfevents.*"))
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(tiny_dataset.root), "--workers", "0",
                 "--out", str(tmp_path / "m.json")]) == 0
    again = json.loads((tmp_path / "m.json").read_text())
    assert json.loads(capsys.readouterr().out) == again
    for key in ("loss", "z_r2", "x_rmse"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-4, abs=1e-6)


def _error(capsys, argv) -> str:
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_input_stops_with_one_line(tiny_dataset, tmp_path, capsys):
    base = ["train", "--steps", "2", "--out", str(tmp_path / "o"), *ARGS]
    assert "no dataset at" in _error(capsys, [*base, "--data", str(tmp_path / "nope"), "--objective", "distance"])
    assert "unknown objective 'depth'" in _error(capsys, [*base, "--data", str(tiny_dataset.root), "--objective", "depth"])
    assert "nothing to train" in _error(capsys, [*base, "--data", str(tiny_dataset.root), "--objective", "untrained"])
    assert "divisible" in _error(capsys, [*base, "--data", str(tiny_dataset.root), "--objective", "distance",
                                          "--accumulate", "3"])
    assert not (tmp_path / "o").exists()


def test_objectives_the_labels_cannot_support(tmp_path, capsys):
    from latentzoo.rendering import render_dataset

    one = render_dataset(tmp_path / "mugs", images=12, size=16, categories=["mug"], centered=True,
                         shard_size=12, test_fraction=0.25, progress=False)
    for objective, latent in (("category", "category"), ("distance-translation", "x")):
        line = _error(capsys, ["train", "--data", str(one.root), "--objective", objective, "--steps", "2",
                               "--out", str(tmp_path / "o"), *ARGS])
        assert f"has a single {latent} value" in line and f"cannot train objective '{objective}'" in line


def test_nan_loss_and_out_of_disk_keep_the_last_checkpoint(tiny_dataset, tmp_path, capsys, monkeypatch):
    argv = ["train", "--data", str(tiny_dataset.root), "--objective", "distance", "--steps", "8",
            "--checkpoint-every", "2", "--out", str(tmp_path / "nan"), *ARGS]
    real_loss, calls = trainer_module.objective_loss, []

    def nan_from_call_5(outputs, targets, layout):
        calls.append(1)
        loss, losses = real_loss(outputs, targets, layout)
        return (loss * float("nan"), losses) if len(calls) >= 5 else (loss, losses)

    monkeypatch.setattr(trainer_module, "objective_loss", nan_from_call_5)
    line = _error(capsys, argv)
    assert "loss became nan at step 5" in line and "checkpoint (step 4) is intact" in line
    assert torch.load(tmp_path / "nan" / "train" / "checkpoint.pt", weights_only=False)["step"] == 4
    monkeypatch.undo()

    real_save, saves = torch.save, []

    def full_disk(obj, f, *a, **kw):
        saves.append(1)
        if len(saves) == 2:
            with open(f, "wb") as fh:
                fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", full_disk)
    argv[argv.index("--out") + 1] = str(tmp_path / "disk")
    line = _error(capsys, argv)
    assert "no space left on device" in line and "checkpoint (step 2) is intact" in line
    train_dir = tmp_path / "disk" / "train"
    assert torch.load(train_dir / "checkpoint.pt", weights_only=False)["step"] == 2
    assert not [p for p in train_dir.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    # a finished-or-failed run is never overwritten silently
    assert "pass --resume" in _error(capsys, argv)


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_dataset, tmp_path):
    steps = ["--steps", "12", "--checkpoint-every", "3", "--snapshot-steps", "2", "5", "12"]
    subprocess.run(_train_cmd(tiny_dataset.root, tmp_path / "ref", *steps), env=_env(), check=True)

    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(tiny_dataset.root, run, *steps), env=_env())
    checkpoint = run / "train" / "checkpoint.pt"
    while not checkpoint.exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed_at = torch.load(checkpoint, weights_only=False)["step"]
    assert 3 <= killed_at < 12 and not (run / "model.safetensors").exists()

    subprocess.run(_train_cmd(tiny_dataset.root, run, *steps, "--resume"), env=_env(), check=True)
    ref_log, run_log = _log(tmp_path / "ref" / "train" / "log.csv"), _log(run / "train" / "log.csv")
    assert [int(r[0]) for r in run_log] == list(range(1, 13))
    assert run_log == ref_log  # same steps, same global batches (CRC), same losses
    ref, resumed = _weights(tmp_path / "ref"), _weights(run)
    assert ref.keys() == resumed.keys()
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)
    for step in (2, 5, 12):  # the killed-and-resumed run wrote the same snapshots
        snapshot = Path("snapshots") / f"step-{step}"
        for name in ("model.safetensors", "config.json"):
            assert (run / snapshot / name).read_bytes() == (tmp_path / "ref" / snapshot / name).read_bytes()


@pytest.mark.slow
def test_ddp_on_two_gloo_processes_matches_one_process(tiny_dataset, tmp_path):
    steps = ["--steps", "4", "--checkpoint-every", "100", "--snapshot-steps", "2"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd = _train_cmd(tiny_dataset.root, tmp_path / "ddp", *steps)
    subprocess.run(torchrun + cmd[1:], env=_env(), check=True)
    # one process, same global batch of 16, in two micro-batches of 8 (= per-rank BatchNorm statistics)
    subprocess.run(_train_cmd(tiny_dataset.root, tmp_path / "one", *steps, "--accumulate", "2"), env=_env(), check=True)
    ddp_log, one_log = _log(tmp_path / "ddp" / "train" / "log.csv"), _log(tmp_path / "one" / "train" / "log.csv")
    assert [r[2] for r in ddp_log] == [r[2] for r in one_log]  # identical global batches
    assert [float(r[1]) for r in ddp_log] == pytest.approx([float(r[1]) for r in one_log], rel=1e-4)
    for folder in (Path(), Path("snapshots") / "step-2"):  # the final model and the snapshot of step 2
        ddp, one = _weights(tmp_path / "ddp" / folder), _weights(tmp_path / "one" / folder)
        params = [k for k in one if "running" not in k and "num_batches" not in k]
        worst = max(float((ddp[k] - one[k]).abs().max()) for k in params)
        print(f"DDP (2 x gloo) vs one process, {folder}: largest parameter difference {worst:.2e}")
        assert worst < 1e-5, worst  # bit-identical on the 2-core CPU box

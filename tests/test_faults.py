"""Hardening (issue 7): CLI conventions, faults (SIGKILL, corrupt files, concurrent loads) and image inputs.

CLI: every subcommand of both scripts documents itself; exit 0/1/2; one line per error, the traceback
only with ``--debug`` (before or after the subcommand); unknown names suggest the closest ones.
Faults: a SIGKILL during render, training and activation extraction resumes to the uninterrupted
result; truncated or modified weights, shards and cache entries are detected by sha256 and fetched,
rendered or computed again (or refused), never used; two processes loading one id share one download.
Inputs: every PIL mode and size goes through the Brain-Score preprocessing of zoo models and the
analysis loaders as the RGB of :mod:`latentzoo.images`; non-image files are refused by name.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import latentzoo
from latentzoo import cli
from latentzoo.analysis.activations import Stimuli, extract
from latentzoo.cli import brainscore_main, main
from latentzoo.errors import UnknownNameError, UserError
from latentzoo.hub import load_pretrained, save_pretrained
from latentzoo.images import load_image
from latentzoo.models.network import LatentNet
from latentzoo.registry import load_registry
from latentzoo.weights import cache_folder
from test_hub import outputs, zoo_env  # noqa: F401  (zoo_env is a fixture)
from test_render_dataset import _files
from test_training import ARGS as TRAIN_ARGS, _env, _log, _train_cmd, _weights
from zoo_helpers import TINY_REGISTRY, FileServer, authors_checkpoint, url_registry


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty latentzoo cache, the tiny registry as the user registry, Brain-Score homes in tmp_path."""
    for var in ("RESULTCACHING_HOME", "BRAINSCORE_HOME", "BRAINIO_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("LATENTZOO_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tiny.yaml").write_text(TINY_REGISTRY)
    monkeypatch.setenv("LATENTZOO_REGISTRY", str(tmp_path / "tiny.yaml"))
    return tmp_path


def _one_error_line(capsys, entry, argv, prog: str) -> str:
    assert entry(argv) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{prog} {argv[0]}: error: "), lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- CLI conventions

def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices)


@pytest.mark.parametrize("prog, parser, entry", [("latentzoo", cli._parser, main),
                                                 ("brainscore", cli._brainscore_parser, brainscore_main)])
def test_every_subcommand_documents_itself(prog, parser, entry, capsys):
    commands = _subcommands(parser())
    assert len(commands) >= (10 if prog == "latentzoo" else 2)
    for name, sub in [*commands.items(), *(("assets import", None),) * (prog == "latentzoo")]:
        with pytest.raises(SystemExit) as exit_:
            entry([*name.split(), "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        flat = " ".join(text.split())
        assert flat.startswith(f"usage: {prog} {name}") and "--debug" in flat, flat[:200]
        if sub is not None:
            assert sub.description and " ".join(sub.description.split()) in flat
            if name != "quickstart":  # the lead's command; the others all carry an example
                assert f"example: {prog} {name}" in flat or f"example: {prog} " in flat, flat[-300:]


def test_exit_codes_and_debug_in_any_position(tmp_path, capsys):
    bad = ["render", "--out", str(tmp_path / "ds"), "--images", "0"]
    line = _one_error_line(capsys, main, bad, "latentzoo")
    assert line.endswith("--images must be at least 1, got 0")
    for argv in (["--debug", *bad], [*bad, "--debug"], [bad[0], "--debug", *bad[1:]]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("Traceback (most recent call last)") and "raise UserError" in err
        assert err.strip().splitlines()[-1] == line
    for argv, message in ((["render"], "the following arguments are required: --out"),
                          (["nonsense"], "invalid choice: 'nonsense'"),
                          (["show", "ds", "--n", "0"], "argument --n: must be at least 1, got 0"),
                          (["evaluate", "m", "--data", "d", "--batch-size", "x"], "expected a positive integer")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_unexpected_errors_are_one_line_and_debug_shows_them(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_cmd_models", lambda args: 1 / 0)
    line = _one_error_line(capsys, main, ["models"], "latentzoo")
    assert line.endswith("ZeroDivisionError: division by zero (unexpected; rerun with --debug for the traceback)")
    assert main(["models", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_brainscore_script_debug_in_either_position(isolated, capsys):
    argv = ["score", "--model", "alexnett"]
    line = _one_error_line(capsys, brainscore_main, argv, "brainscore")
    assert "unknown model 'alexnett'; did you mean alexnet" in line
    for debug in (["--debug", *argv], [*argv, "--debug"]):
        assert brainscore_main(debug) == 1
        err = capsys.readouterr().err
        assert "Traceback" in err and err.strip().splitlines()[-1] == line


@pytest.mark.parametrize("entry, prog, argv, message", [
    (main, "latentzoo", ["evaluate", "tdw-distanse-r18", "--data", "d"],
     "unknown model id 'tdw-distanse-r18'; did you mean tdw-distance-r18"),
    (main, "latentzoo", ["layermap", "tiny-untrained-r81", "--benchmarks", "local:x"],
     "unknown model id 'tiny-untrained-r81'; did you mean tiny-untrained-r18"),
    (brainscore_main, "brainscore", ["score", "--model", "tdw-distanse-r18"],
     "unknown model 'tdw-distanse-r18'; did you mean tdw-distance-r18"),
    (brainscore_main, "brainscore", ["score", "--model", "tiny-untrained-r18", "--benchmark", "latentzoo.Distanse-IT"],
     "unknown benchmark 'latentzoo.Distanse-IT'; did you mean latentzoo.Distance-IT"),
    (brainscore_main, "brainscore", ["score", "--model", "tiny-untrained-r18", "--benchmark",
                                     "MajajHong2015public.IT-plss"],
     "unknown benchmark 'MajajHong2015public.IT-plss'; did you mean MajajHong2015public.IT-pls"),
    (main, "latentzoo", ["render", "--out", "{tmp}/ds", "--images", "4", "--library", "procedurl"],
     "unknown library 'procedurl'; did you mean procedural?"),
    (main, "latentzoo", ["render", "--out", "{tmp}/ds", "--images", "4", "--backend", "embeded", "--quiet"],
     "unknown backend 'embeded'; did you mean embedded?"),
    (main, "latentzoo", ["render", "--out", "{tmp}/ds", "--images", "4", "--backgrounds", "photo"],
     "unknown backgrounds 'photo'; did you mean photos?"),
    (main, "latentzoo", ["train", "--data", "{data}", "--objective", "distanse", "--steps", "1", "--out", "{tmp}/m"],
     "unknown objective 'distanse'; did you mean distance"),
    (main, "latentzoo", ["train", "--data", "{tmp}/missing", "--objective", "distance", "--steps", "1",
                         "--out", "{tmp}/m"], "no dataset at"),
    (main, "latentzoo", ["show", "{tmp}/missing"], "no dataset at"),
    (main, "latentzoo", ["analyze", "tiny-untrained-r18", "untrained-r18-s1", "--data", "{tmp}/missing",
                         "--out", "{tmp}/r"], "no dataset at"),
    (main, "latentzoo", ["analyze", "tiny-untrained-r18", "untrained-r18-s1", "--data", "{data}",
                         "--out", "{tmp}/r", "--pooling", "max", "--quiet"], "pooling must be 'none', 'avg'"),
])
def test_user_errors_are_one_line_naming_the_closest_ids(entry, prog, argv, message, isolated, tiny_dataset, capsys):
    argv = [a.format(tmp=isolated, data=tiny_dataset.root) for a in argv]
    assert message in _one_error_line(capsys, entry, argv, prog)


def test_python_api_unknown_ids_are_user_and_value_errors(isolated):
    with pytest.raises(UnknownNameError, match="did you mean tdw-distance-r18") as e:
        latentzoo.from_pretrained("tdw-distanse-r18")
    assert isinstance(e.value, UserError) and isinstance(e.value, ValueError)


# ----------------------------------------------------------------------------- SIGKILL, then rerun

def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the process ended before it could be killed"


def test_render_killed_then_rerun_gives_the_uninterrupted_files(tmp_path):
    args = ["--images", "800", "--size", "24", "--seed", "11", "--shard-size", "10", "--quiet"]
    out, clean = tmp_path / "killed" / "ds", tmp_path / "clean" / "ds"  # the folder name is the dataset name
    proc = subprocess.Popen([sys.executable, "-m", "latentzoo.cli", "render", "--out", str(out), *args])
    _kill_when(proc, lambda: len(list((out / "shards").glob("*.tar"))) >= 2)
    assert not (out / "dataset.json").exists()
    assert main(["render", "--out", str(out), *args]) == 0
    assert main(["render", "--out", str(clean), *args]) == 0
    assert _files(out) == _files(clean)
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_training_killed_twice_then_resumed_matches_an_uninterrupted_run(tiny_dataset, tmp_path):
    steps = ["--steps", "16", "--checkpoint-every", "2"]
    subprocess.run(_train_cmd(tiny_dataset.root, tmp_path / "ref", *steps), env=_env(), check=True)
    run, killed_at = tmp_path / "run", [0]
    checkpoint = run / "train" / "checkpoint.pt"

    def step() -> int:
        try:
            return torch.load(checkpoint, weights_only=False)["step"]
        except (FileNotFoundError, EOFError, RuntimeError):
            return 0

    for resume in ([], ["--resume"]):
        proc = subprocess.Popen(_train_cmd(tiny_dataset.root, run, *steps, *resume), env=_env())
        _kill_when(proc, lambda: step() > killed_at[-1])
        killed_at.append(step())
    assert 0 < killed_at[1] < killed_at[2] < 16 and not (run / "model.safetensors").exists()
    subprocess.run(_train_cmd(tiny_dataset.root, run, *steps, "--resume"), env=_env(), check=True)
    assert _log(run / "train" / "log.csv") == _log(tmp_path / "ref" / "train" / "log.csv")
    ref, resumed = _weights(tmp_path / "ref"), _weights(run)
    assert ref.keys() == resumed.keys() and all(torch.equal(ref[k], resumed[k]) for k in ref)


#: Runs `latentzoo analyze` and SIGKILLs itself after the second batch of the second model's extraction.
_KILLED_ANALYZE = """
import os, signal, sys
import latentzoo.analysis.activations as activations
from latentzoo.cli import main
real_run, models = activations._run, []
def run(model, *args, **kwargs):
    models.append(model)
    if len(models) == 2:
        batches = []
        def hook(*_):
            batches.append(1)
            if len(batches) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        model.register_forward_hook(hook)
    return real_run(model, *args, **kwargs)
activations._run = run
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_analyze_killed_during_extraction_resumes_without_recomputing(tiny_dataset, tmp_path):
    folders = [save_pretrained(LatentNet.create("r18", "distance", seed=s, input_size=32, id=f"m{s}"), tmp_path / f"m{s}")
               for s in (0, 1)]
    layers = ["layer1.0.relu", "avgpool"]
    argv = ["analyze", *map(str, folders), "--data", str(tiny_dataset.root), "--out", str(tmp_path / "out"),
            "--layers", *layers, "--batch-size", "16", "--quiet"]
    proc = subprocess.run([sys.executable, "-c", _KILLED_ANALYZE, *argv], env=_env())
    assert proc.returncode == -signal.SIGKILL
    cache = tmp_path / "out" / "cache"
    done = [f for f in cache.iterdir() if (f / "manifest.json").exists()]
    partial = [f for f in cache.iterdir() if f not in done]
    assert len(done) == 1 and len(partial) == 1 and list(partial[0].glob(".*.npy.*.tmp"))  # killed mid-pass
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in done[0].glob("*.npy")}
    assert len(stamps) == 2

    assert main(argv) == 0
    assert (tmp_path / "out" / "index.html").is_file()
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in done[0].glob("*.npy")} == stamps  # not redone
    assert not list(cache.rglob("*.tmp"))
    stimuli = Stimuli.from_dataset(tiny_dataset.root, "test")
    for folder in folders:  # the resumed cache holds exactly what an uninterrupted extraction computes
        fresh = extract(load_pretrained(folder), stimuli, layers, batch_size=16, progress=False)
        cached = extract(load_pretrained(folder), stimuli, layers, cache_dir=cache, model_id=folder.name,
                         progress=False)
        for layer in layers:
            np.testing.assert_allclose(cached[layer], fresh[layer], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- corrupt files

def _damaged(data: bytes, how: str) -> bytes:
    """``data`` truncated to half, or with one byte in the middle flipped (same size)."""
    mid = len(data) // 2
    return data[:mid] if how == "truncated" else data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]


def test_damaged_cached_weights_are_fetched_again_or_refused_offline(zoo_env, monkeypatch):
    tmp, server, model = zoo_env
    sha = hashlib.sha256((tmp / "srv" / "dist.pth").read_bytes()).hexdigest()
    monkeypatch.setenv("LATENTZOO_REGISTRY", str(url_registry(tmp / "reg.yaml", "t-distance-r18",
                                                               f"{server.url}/dist.pth", sha)))
    latentzoo.from_pretrained("t-distance-r18")
    folder = cache_folder(load_registry()["t-distance-r18"])
    good = {name: (folder / name).read_bytes() for name in ("model.safetensors", "config.json")}
    damages = [("model.safetensors", "truncated"), ("model.safetensors", "modified"), ("config.json", "modified")]
    for name, how in damages:
        (folder / name).write_bytes(_damaged(good[name], how))
        with pytest.warns(UserWarning, match="truncated, modified or for another pin"):
            net = latentzoo.from_pretrained("t-distance-r18")
        assert torch.equal(outputs(net), outputs(model))
        assert {n: (folder / n).read_bytes() for n in good} == good
    assert server.requests == ["/dist.pth"] * (1 + len(damages))
    (folder / "model.safetensors").write_bytes(_damaged(good["model.safetensors"], "modified"))
    monkeypatch.setenv("LATENTZOO_OFFLINE", "1")
    with pytest.raises(UserError, match="is not in the cache .* downloads are off"):
        latentzoo.from_pretrained("t-distance-r18")


@pytest.mark.parametrize("how", ["truncated", "modified"])
def test_damaged_shard_is_refused_by_readers_and_rerendered_by_render(how, tmp_path, capsys):
    args = ["--images", "40", "--size", "16", "--seed", "2", "--shard-size", "10", "--quiet"]
    out = tmp_path / "ds"
    assert main(["render", "--out", str(out), *args]) == 0
    original = _files(out)
    shard = out / "shards" / "test-000000.tar"
    shard.write_bytes(_damaged(shard.read_bytes(), how))
    expected = f"shard {shard} is corrupt (truncated or modified"
    assert expected in _one_error_line(capsys, main, ["show", str(out), "--out", str(tmp_path / "s.png")], "latentzoo")
    if how == "truncated":  # training reads it in a DataLoader worker process; the line survives the re-raise
        train = ["train", "--data", str(out), "--objective", "distance", "--steps", "1", "--out", str(tmp_path / "m"),
                 *TRAIN_ARGS, "--workers", "2"]
        assert expected in _one_error_line(capsys, main, train, "latentzoo")
    with pytest.raises(UserError, match="is corrupt"):
        Stimuli.from_dataset(out, "test").batches(8).__next__()
    with pytest.warns(UserWarning, match="is corrupt .* rendering it again"):
        assert main(["render", "--out", str(out), *args]) == 0
    assert _files(out) == original


def test_damaged_activation_cache_entries_are_recomputed(tiny_dataset, tmp_path):
    net = LatentNet.create("r18", "distance", seed=0, input_size=32)
    stimuli = Stimuli.from_dataset(tiny_dataset.root, "test", n=16)
    first = np.array(extract(net, stimuli, ["avgpool"], cache_dir=tmp_path, progress=False)["avgpool"])
    (npy,) = tmp_path.rglob("avgpool.npy")
    good, passes = npy.read_bytes(), []
    net.register_forward_pre_hook(lambda *_: passes.append(1))
    for how in ("truncated", "modified"):
        npy.write_bytes(_damaged(good, how))
        with pytest.warns(UserWarning, match="does not match the sha256 in manifest.json"):
            again = extract(net, stimuli, ["avgpool"], cache_dir=tmp_path, progress=False)["avgpool"]
        np.testing.assert_array_equal(again, first)
    assert len(passes) == 2 and npy.read_bytes() == good
    extract(net, stimuli, ["avgpool"], cache_dir=tmp_path, progress=False)
    assert len(passes) == 2  # intact again: used from the cache


def test_spatial_benchmark_stimuli_cache_is_checked(tmp_path, monkeypatch):
    from latentzoo import spatial

    monkeypatch.setattr(spatial, "STIMULI_SETTINGS", dict(images=24, size=16, seed=3, library="procedural",
                                                          test_fraction=0.0, shard_size=8, progress=False))
    root = spatial.stimuli_dir(tmp_path / "stimuli")
    _, latents = spatial.load_stimuli(root)
    original = _files(root)
    jpeg = root / "stimuli" / f"{latents['key'][3]}.jpg"
    jpeg.write_bytes(_damaged(jpeg.read_bytes(), "modified"))
    spatial.load_stimuli(root)
    assert _files(root) == original  # rewritten from the (sha256-checked) shard
    shard = root / "shards" / "train-000001.tar"
    shard.write_bytes(_damaged(shard.read_bytes(), "truncated"))
    with pytest.warns(UserWarning, match="is corrupt"):
        assert spatial.stimuli_dir(root) == root
    assert _files(root) == original


#: Loads one zoo id once a start file appears and prints a hash of its output on a fixed input.
_LOADER = """
import hashlib, os, sys, time
import torch, latentzoo
ready, start = sys.argv[1:]
open(ready, "w").close()
while not os.path.exists(start):
    time.sleep(0.005)
net = latentzoo.from_pretrained("t-distance-r18")
with torch.no_grad():
    print(hashlib.sha256(net(torch.ones(1, 3, 64, 64)).numpy().tobytes()).hexdigest())
"""


def test_two_processes_loading_one_id_share_one_download(tmp_path):
    authors_checkpoint(tmp_path / "srv" / "dist.pth")
    sha = hashlib.sha256((tmp_path / "srv" / "dist.pth").read_bytes()).hexdigest()
    server = FileServer(tmp_path / "srv", delay=1.0)  # the first download holds the lock >= 1 s
    try:
        registry = url_registry(tmp_path / "reg.yaml", "t-distance-r18", f"{server.url}/dist.pth", sha)
        env = {**_env(), "LATENTZOO_CACHE": str(tmp_path / "cache"), "LATENTZOO_REGISTRY": str(registry)}
        env.pop("LATENTZOO_OFFLINE", None)
        ready = [tmp_path / f"ready{i}" for i in range(2)]
        procs = [subprocess.Popen([sys.executable, "-c", _LOADER, str(r), str(tmp_path / "start")], env=env,
                                  stdout=subprocess.PIPE, text=True) for r in ready]
        deadline = time.time() + 120
        while not all(r.exists() for r in ready) and time.time() < deadline:
            time.sleep(0.01)
        (tmp_path / "start").touch()
        results = [p.communicate(timeout=120)[0].strip() for p in procs]
    finally:
        server.close()
    assert [p.returncode for p in procs] == [0, 0]
    assert len(results[0]) == 64 and results[0] == results[1]
    assert server.requests == ["/dist.pth"]


# ----------------------------------------------------------------------------- image inputs

_RNG = np.random.default_rng(0)
_RGB = _RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)
_ALPHA = _RNG.integers(0, 256, (12, 10), dtype=np.uint8)
_GRAY16 = _RNG.integers(0, 65536, (12, 10), dtype=np.uint16)
_PALETTE = _RNG.integers(0, 256, (256, 3), dtype=np.uint8)
_INDEX = _RNG.integers(0, 256, (12, 10), dtype=np.uint8)
_CMYK = _RNG.integers(0, 256, (12, 10, 4), dtype=np.uint8)


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None] / 255.0
    return np.rint(rgb * a + 255 * (1 - a))


def _stimuli() -> dict[str, tuple[Image.Image, np.ndarray, int]]:
    """file name -> (image to save, expected RGB array, tolerance in 8-bit levels)."""
    palette = Image.fromarray(_INDEX, "P")
    palette.putpalette(_PALETTE.ravel().tolist())
    gradient = np.add.outer(np.arange(3000) // 12, np.arange(4000) // 16).astype(np.uint8)
    huge = np.stack([gradient, gradient[::-1], 255 - gradient], axis=-1)
    return {
        "gray.png": (Image.fromarray(_RGB[..., 0], "L"), np.repeat(_RGB[..., :1], 3, axis=2), 0),
        "gray_alpha.png": (Image.fromarray(np.stack([_RGB[..., 0], _ALPHA], -1), "LA"),
                           np.repeat(_on_white(_RGB[..., :1], _ALPHA), 3, axis=2), 1),
        "rgba.png": (Image.fromarray(np.dstack([_RGB, _ALPHA]), "RGBA"), _on_white(_RGB, _ALPHA), 1),
        "palette.png": (palette, _PALETTE[_INDEX], 0),
        "sixteen_bit.png": (Image.fromarray(_GRAY16), np.repeat(np.rint(_GRAY16 / 257)[..., None], 3, axis=2), 0),
        "cmyk.tif": (Image.fromarray(_CMYK, "CMYK"),
                     np.rint((255 - _CMYK[..., :3].astype(int)) * (255 - _CMYK[..., 3:].astype(int)) / 255), 1),
        "tiny.png": (Image.fromarray(_RGB[:8, :8]), _RGB[:8, :8], 0),
        "huge.png": (Image.fromarray(huge), huge, 0),
    }


@pytest.fixture(scope="module")
def stimulus_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("modes")
    expected = {}
    for name, (image, rgb, tolerance) in _stimuli().items():
        image.save(folder / name, **({"compress_level": 1} if name.endswith(".png") else {}))
        expected[name] = (rgb, tolerance)
    assert Image.open(folder / "sixteen_bit.png").mode == "I;16" and Image.open(folder / "cmyk.tif").mode == "CMYK"
    return folder, expected


@pytest.fixture(scope="module")
def small_net():
    return LatentNet.create("r18", "distance", seed=0, input_size=32).eval()


def test_the_image_loader_gives_the_documented_rgb(stimulus_folder):
    folder, expected = stimulus_folder
    for name, (rgb, tolerance) in expected.items():
        loaded = np.asarray(load_image(folder / name), dtype=np.int64)
        assert loaded.shape == rgb.shape, name
        assert np.abs(loaded - rgb).max() <= tolerance, name
    gray = np.asarray(load_image(folder / "sixteen_bit.png"))
    assert gray.max() > 200 and len(np.unique(gray)) > 50  # scaled, not clipped at 255


def test_brainscore_preprocessing_of_zoo_models_reads_every_mode(stimulus_folder, small_net, tmp_path, monkeypatch):
    from latentzoo.models.brainscore import wrap

    for var in ("RESULTCACHING_HOME", "BRAINSCORE_HOME", "BRAINIO_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    folder, expected = stimulus_folder
    paths = [str(folder / name) for name in expected]
    wrapper = wrap(small_net, "modes-test", batch_size=4)
    pixels = torch.from_numpy(wrapper._extractor.preprocess(paths))
    reference = small_net.preprocess([load_image(p) for p in paths])
    assert torch.equal(pixels, reference)
    mean, std = torch.tensor(small_net.config.mean).view(3, 1, 1), torch.tensor(small_net.config.std).view(3, 1, 1)
    gray = pixels[list(expected).index("gray.png")] * std + mean
    torch.testing.assert_close(gray[0], gray[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(gray[0], gray[2], atol=1e-6, rtol=0)
    activations = wrapper(paths, layers=["avgpool"])  # Brain-Score's own extractor, batching and padding
    order = [list(activations["stimulus_path"].values).index(p) for p in paths]
    with torch.no_grad():
        direct = torch.flatten(small_net.avgpool(_trunk(small_net, reference)), 1).numpy()
    np.testing.assert_allclose(activations.values[order], direct, rtol=1e-4, atol=1e-5)


def _trunk(net: LatentNet, x: torch.Tensor) -> torch.Tensor:
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
        x = getattr(net, name)(x)
    return x


def test_analysis_folder_loader_reads_every_mode(stimulus_folder, small_net):
    folder, expected = stimulus_folder
    stimuli = Stimuli.from_folder(folder)
    assert stimuli.ids == sorted(expected)
    images = [im for batch in stimuli.batches(3) for im in batch]
    for name, image in zip(stimuli.ids, images):
        rgb, tolerance = expected[name]
        assert image.mode == "RGB" and np.abs(np.asarray(image, dtype=np.int64) - rgb).max() <= tolerance, name
    features = extract(small_net, stimuli, ["avgpool"], batch_size=3, progress=False)["avgpool"]
    with torch.no_grad():
        direct = torch.flatten(small_net.avgpool(_trunk(small_net, small_net.preprocess(images))), 1).numpy()
    np.testing.assert_allclose(features, direct, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", b"stimulus notes", "notes.txt is not an image"),
    (".DS_Store", b"\x00\x00\x00\x01Bud1", ".DS_Store is not an image"),
    ("fake.jpg", b"not a jpeg at all", "fake.jpg is not an image"),
])
def test_non_image_files_in_a_stimulus_folder_are_refused_by_name(name, content, message, tmp_path):
    Image.fromarray(_RGB).save(tmp_path / "a.png")
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=message.replace(".", r"\.")) as e:
        Stimuli.from_folder(tmp_path)
    assert "\n" not in str(e.value) and str(tmp_path / name) in str(e.value)

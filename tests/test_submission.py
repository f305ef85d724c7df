"""`latentzoo submission`: the plugin zip, unpacked into a throwaway brainscore_vision tree, loads offline."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

import latentzoo  # noqa: E402
from latentzoo.cli import main  # noqa: E402
from latentzoo.errors import UserError  # noqa: E402
from zoo_helpers import FileServer, authors_checkpoint, url_registry, use_registry  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IDS = ["t-distance-r18", "untrained-r18-s1"]


def throwaway_brainscore_tree(root: Path) -> Path:
    """``root/brainscore_vision``: the installed package's files linked in, ``models/`` a real folder."""
    import brainscore_vision

    source = Path(brainscore_vision.__file__).parent
    tree = root / "brainscore_vision"
    (tree / "models").mkdir(parents=True)
    for child in source.iterdir():
        if child.name not in ("models", "__pycache__"):
            (tree / child.name).symlink_to(child)
    for child in (source / "models").iterdir():
        if child.name != "__pycache__":
            (tree / "models" / child.name).symlink_to(child)
    return tree


@pytest.mark.slow
def test_submission_zip_loads_through_brainscore_load_model_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LATENTZOO_CACHE", str(tmp_path / "cache"))
    upstream = authors_checkpoint(tmp_path / "srv" / "d.pth", seed=4)
    sha = hashlib.sha256((tmp_path / "srv" / "d.pth").read_bytes()).hexdigest()
    server = FileServer(tmp_path / "srv")
    use_registry(monkeypatch, url_registry(tmp_path / "reg.yaml", IDS[0], f"{server.url}/d.pth", sha))
    latentzoo.from_pretrained(IDS[0])  # fills the cache the plugin will read
    server.close()

    out = tmp_path / "submission.zip"
    assert main(["submission", *IDS, "--out", str(out), "--plugin", "latentzoo_test"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        init = z.read("models/latentzoo_test/__init__.py").decode()
        metadata = yaml.safe_load(z.read("models/latentzoo_test/metadata.yml"))
        layer_map = json.loads(z.read(f"models/latentzoo_test/region_layer_map/{IDS[0]}.json"))
        z.extractall(tmp_path / "unpacked")
    assert {f"models/latentzoo_test/{n}" for n in ("__init__.py", "model.py", "requirements.txt", "test.py",
                                                   "metadata.yml", "registry.yaml")} <= names
    for model_id in IDS:
        assert f"model_registry['{model_id}'] = lambda: commit_model('{model_id}')" in init
        assert "huggingface_link" in metadata["models"][model_id]
    assert layer_map == {"V1": "layer1", "V2": "layer2", "V4": "layer2", "IT": "layer3"}
    assert metadata["models"][IDS[1]]["total_parameter_count"] == 11_689_512  # torchvision resnet18

    tree = throwaway_brainscore_tree(tmp_path / "site")
    (tmp_path / "unpacked" / "models" / "latentzoo_test").rename(tree / "models" / "latentzoo_test")
    script = f"""
import json, sys, torch, pytest, brainscore_vision
assert brainscore_vision.__file__.startswith({str(tree)!r}), brainscore_vision.__file__
assert pytest.main([{str(tree / "models" / "latentzoo_test" / "test.py")!r}, "-q", "-p", "no:cacheprovider"]) == 0
x = torch.linspace(-1, 1, 3 * 224 * 224).reshape(1, 3, 224, 224)
for model_id in {IDS!r}:
    model = brainscore_vision.load_model(model_id)
    net = model.activations_model._model
    with torch.no_grad():
        out = net.eval()(x)[0, :5].tolist()
    print(json.dumps([model_id, model.identifier, dict(model.layer_model.region_layer_map), out]))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree.parent), str(REPO), str(REPO / "tests")]),
           "LATENTZOO_OFFLINE": "1", "LATENTZOO_REGISTRY": str(tmp_path / "no-user-registry.yaml"),
           "BS_INSTALL_DEPENDENCIES": "no", "AWS_EC2_METADATA_DISABLED": "true",
           "RESULTCACHING_HOME": str(tmp_path / "rc"), "BRAINSCORE_HOME": str(tmp_path / "bs")}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    loaded = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('["')]
    assert [row[:2] for row in loaded] == [[i, i] for i in IDS]
    assert loaded[0][2] == layer_map
    with torch.no_grad():
        expected = upstream(torch.linspace(-1, 1, 3 * 224 * 224).reshape(1, 3, 224, 224))[0, :5]
    assert torch.allclose(torch.tensor(loaded[0][3]), expected, atol=1e-5)  # the authors' weights, from the cache


def test_submission_refuses_bad_input(tmp_path):
    from latentzoo.models.submission import write_submission

    with pytest.raises(UserError, match="unknown model id 'tdw-nope-r18'"):
        write_submission(["tdw-nope-r18"], tmp_path / "s.zip")
    with pytest.raises(UserError, match="--plugin must be a Python identifier"):
        write_submission(["untrained-r18-s0"], tmp_path / "s.zip", plugin="bad-name")
    assert not (tmp_path / "s.zip").exists()

"""`latentzoo submission`: a plugin zip that installs from PyPI alone and, in a fresh venv with
brainscore-vision but without latentzoo, passes Brain-Score's own generic plugin tests and its own
test.py, loading the published weights from a loopback Hub; its activations equal latentzoo's."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentzoo.cli import main
from latentzoo.errors import UserError
from latentzoo.hub import save_pretrained
from latentzoo.models.network import LatentNet
from latentzoo.publish import publish, register_folder
from latentzoo.registry import load_registry
from loopback_hub import hub  # noqa: F401  (the loopback Hub fixture)
from zoo_helpers import use_registry

PLUGIN = "latentzoo_test"
MODEL_ID = "sub-distance-r18"
LAYERS = {"V1": "layer1", "V2": "layer2", "V4": "layer3", "IT": "layer4", "behavior": "avgpool"}


def test_submission_refuses_models_whose_weights_are_not_on_the_hub(tmp_path, monkeypatch):
    from latentzoo.models.submission import write_submission

    use_registry(monkeypatch, tmp_path / "user.yaml")
    folder = save_pretrained(LatentNet.create("r18", "distance", seed=1, input_size=32), tmp_path / "m",
                             dataset="tiny", seed=1, layers=LAYERS)
    register_folder(folder, "local-distance-r18")
    for name in ("local-distance-r18", str(folder), "untrained-r18-s0"):
        with pytest.raises(UserError, match=r"a submission loads its weights from the Hugging Face Hub, but they come "
                                            r"from .*; publish them first: `latentzoo publish \S+ --repo ORG/NAME`"):
            write_submission([name], tmp_path / "s.zip")
    with pytest.raises(UserError, match="--plugin must be a Python identifier"):
        write_submission(["untrained-r18-s0"], tmp_path / "s.zip", plugin="bad-name")
    assert not (tmp_path / "s.zip").exists()


def fresh_venv(root: Path, first: Path) -> Path:
    """A venv whose ``sys.path`` is ``first`` and this venv's site-packages, but whose imports cannot find
    latentzoo: the ``.pth`` lists site-packages as a plain folder, so its ``__editable__`` hook never runs."""
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "main_site_packages.pth").write_text(f"{first}\n{sysconfig.get_paths()['purelib']}\n")
    if importlib.util.find_spec("pytest_check") is None:  # brainscore-core's test extra, not installed here
        (Path(purelib) / "pytest_check.py").write_text(
            '"""Stand-in: brainscore_core\'s plugin-test helpers import pytest-check for a runner not used here."""\n')
    return python


def brainscore_tree(root: Path) -> Path:
    """``root/brainscore_vision``: the installed package linked in, with a ``models/`` holding no plugin and
    stand-ins for the three images of ``model_helpers/generic_plugin_tests_resources/`` (not in the wheel)."""
    import brainscore_vision

    source = Path(brainscore_vision.__file__).parent
    tree = root / "brainscore_vision"
    for folder in (tree / "models", tree / "model_helpers" / "generic_plugin_tests_resources"):
        folder.mkdir(parents=True)
    for child in source.iterdir():
        if child.name not in ("models", "model_helpers", "__pycache__"):
            (tree / child.name).symlink_to(child)
    shutil.copy(source / "models" / "__init__.py", tree / "models" / "__init__.py")
    for child in (source / "model_helpers").iterdir():
        if child.suffix == ".py":  # copied: the generic tests find their images next to their own __file__
            shutil.copy(child, tree / "model_helpers" / child.name)
        elif child.name != "__pycache__":
            (tree / "model_helpers" / child.name).symlink_to(child)
    rng = np.random.default_rng(0)
    for name, size in (("rgb1.jpg", (96, 80)), ("rgb2.jpg", (40, 64)), ("rgb3.png", (128, 128))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            tree / "model_helpers" / "generic_plugin_tests_resources" / name)
    return tree


DRIVER = """
import importlib.util, json, sys
import numpy as np, pytest
assert importlib.util.find_spec("latentzoo") is None, "latentzoo is importable"
import brainscore_vision
assert brainscore_vision.__file__.startswith(sys.argv[1]), brainscore_vision.__file__
plugin = f"{sys.argv[1]}/models/{sys.argv[2]}"
generic = pytest.main(["-m", "not slow", "-p", "no:cacheprovider", "-q",
                       f"{sys.argv[1]}/model_helpers/generic_plugin_tests.py", "--plugin_directory", plugin])
own = pytest.main(["-m", "not slow", "-p", "no:cacheprovider", "-q", f"{plugin}/test.py"])
print(json.dumps({"generic": int(generic), "own": int(own)}))
model = brainscore_vision.load_model(sys.argv[3])
stimuli = json.loads(sys.argv[4])
activations = model.activations_model(stimuli, layers=model.layers)
np.save(sys.argv[5], activations.values)
print(json.dumps({"layers": list(model.layers), "region_layer_map": dict(model.layer_model.region_layer_map)}))
"""


@pytest.mark.slow
def test_published_model_plugin_runs_in_a_venv_without_latentzoo(hub, tmp_path, monkeypatch, capsys):
    from latentzoo.models.brainscore import commit

    net = LatentNet.create("r18", "distance", seed=11, input_size=32)
    folder = save_pretrained(net, tmp_path / "runs" / "d", dataset="tiny", seed=11, steps=50, layers=LAYERS)
    done = publish(folder, "lab/sub-distance-r18", model_id=MODEL_ID)
    out = tmp_path / "submission.zip"
    assert main(["submission", MODEL_ID, "--out", str(out), "--plugin", PLUGIN]) == 0
    assert capsys.readouterr().out.strip() == str(out)

    tree = brainscore_tree(tmp_path / "site")
    with zipfile.ZipFile(out) as z:
        texts = {n: z.read(n).decode() for n in z.namelist()}
        z.extractall(tree.parent)  # models/<plugin>/ lands in the throwaway brainscore_vision tree
    (tree.parent / "models" / PLUGIN).rename(tree / "models" / PLUGIN)
    assert sorted(texts) == [f"models/{PLUGIN}/{n}" for n in
                             ("__init__.py", "metadata.yml", "model.py", "requirements.txt", "test.py")]
    assert not any(str(tmp_path) in t or "/work/" in t for t in texts.values())  # no local path anywhere
    assert texts[f"models/{PLUGIN}/requirements.txt"].split() == ["torch", "torchvision", "huggingface_hub",
                                                                   "safetensors"]
    spec = load_registry()[MODEL_ID]
    model_py = texts[f"models/{PLUGIN}/model.py"]
    for fact in ('"input_size": 32', f'"revision": "{done.revision}"', f'"sha256": "{done.sha256}"',
                 '"repo": "lab/sub-distance-r18"', '"avgpool": 512'):
        assert fact in model_py, fact
    assert spec.weights["hub"]["sha256"] == done.sha256

    stimuli = [str(p) for p in sorted((tree / "model_helpers" / "generic_plugin_tests_resources").iterdir())]
    python = fresh_venv(tmp_path / "venv", tree.parent)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LATENTZOO_REGISTRY")}
    env.update(BS_INSTALL_DEPENDENCIES="no", AWS_EC2_METADATA_DISABLED="true", TQDM_DISABLE="1",
               HF_HUB_CACHE=str(tmp_path / "plugin-hf-cache"), RESULTCACHING_HOME=str(tmp_path / "rc"),
               BRAINSCORE_HOME=str(tmp_path / "bs"), BRAINIO_HOME=str(tmp_path / "brainio"))
    result = subprocess.run([str(python), "-c", DRIVER, str(tree), PLUGIN, MODEL_ID, json.dumps(stimuli),
                             str(tmp_path / "plugin.npy")], cwd=tree.parent, env=env, capture_output=True,
                            text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert reports[0] == {"generic": 0, "own": 0}, result.stdout[-3000:]
    assert "5 passed" in result.stdout and "2 passed" in result.stdout  # the 5 generic tests, then test.py's 2
    assert reports[1] == {"layers": ["layer1", "layer2", "layer3", "layer4", "avgpool"],
                          "region_layer_map": {r: LAYERS[r] for r in ("V1", "V2", "V4", "IT")}}
    assert any(f"/lab/sub-distance-r18/resolve/{done.revision}/model.safetensors" in r for r in hub.requests)

    ours = commit(MODEL_ID).activations_model(stimuli, layers=reports[1]["layers"])
    np.testing.assert_allclose(np.load(tmp_path / "plugin.npy"), ours.values, rtol=0, atol=1e-5)

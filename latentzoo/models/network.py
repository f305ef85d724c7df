"""The zoo's network: a torchvision/timm classifier whose last layer is the latent head.

``LatentNet`` keeps the backbone's own module names (``conv1``, ``layer1.0.relu``, ..., ``fc``),
so its state dict loads into plain torchvision/timm models and Brain-Score hooks see the layer
names of docs/models.md. ``predict()`` turns images into latents in physical units.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence, Union

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

from latentzoo.errors import UserError, unknown
from latentzoo.images import load_image, to_rgb
from latentzoo.latents import (Normalisation, Slot, decode_outputs, layout_from_dicts,
                               layout_size, output_layout)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: What ``predict``/``preprocess`` take (see :func:`as_batch`).
Images = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor, Sequence[Any]]

#: Short architecture names of the zoo -> (torchvision builder, timm name).
ARCHS = {"r18": "resnet18", "r50": "resnet50"}


def weights_hash(model: nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of a model's state dict."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def resnet_layers(arch: str) -> list[str]:
    """Candidate layers (docs/models.md) for a torchvision ResNet: relu, every block's relu, avgpool, fc."""
    blocks = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3], "resnet50": [3, 4, 6, 3],
              "resnet101": [3, 4, 23, 3], "resnet152": [3, 8, 36, 3]}[ARCHS.get(arch, arch)]
    return (["relu"] + [f"layer{i + 1}.{b}.relu" for i, n in enumerate(blocks) for b in range(n)]
            + ["avgpool", "fc"])


@dataclass
class LatentConfig:
    """What a model folder's ``config.json`` ``latentzoo`` block records about a network."""

    arch: str
    objective: str
    layout: list[Slot]
    n_categories: int = 117
    n_identities: int = 548
    num_classes: int | None = None  # head width; defaults to the layout's size (1000 if empty)
    normalisation: Normalisation | None = None
    units: str = "physical"  # "zscore" for upstream checkpoints without published statistics
    input_size: int = 224
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    interpolation: str = "bilinear"
    id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # dataset, seed, steps, metrics, layers

    @property
    def label_names(self) -> dict[str, list[str]]:
        """Class names per class task (``extra["labels"]``, e.g. {"category": [...]}), when recorded."""
        return {task: list(names) for task, names in (self.extra.get("labels") or {}).items()}

    @property
    def head_size(self) -> int:
        return self.num_classes or layout_size(self.layout) or 1000

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layout"] = [s.to_dict() for s in self.layout]
        d["normalisation"] = self.normalisation.to_dict() if self.normalisation else None
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["num_classes"] = self.head_size
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LatentConfig":
        d = dict(d)
        d["layout"] = layout_from_dicts(d["layout"])
        d["normalisation"] = Normalisation.from_dict(d["normalisation"]) if d.get("normalisation") else None
        return cls(**d)


def build_backbone(arch: str, num_classes: int) -> nn.Module:
    """torchvision ResNet for ``r18``/``r50``/``resnetNN``, else ``timm.create_model(arch)``; random init."""
    name = ARCHS.get(arch, arch)
    if hasattr(torchvision.models, name) and name.startswith("resnet"):
        return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    import timm

    if not timm.is_model(name):
        resnet = re.fullmatch(r"r(\d+)", arch)
        hint = f"use resnet{resnet[1]} for a ResNet-{resnet[1]}; " if resnet else ""
        raise unknown("architecture", arch, [*ARCHS, *timm.list_models()],
                      hint + "architectures are r18, r50, resnetNN or any timm model name")
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


class LatentNet(nn.Module):
    """A backbone with a latent head and ``predict()``; parameters keep the backbone's names."""

    def __init__(self, backbone: nn.Module, config: LatentConfig):
        super().__init__()
        object.__setattr__(self, "backbone", backbone)  # not a submodule: no "backbone." key prefix
        for name, child in backbone.named_children():
            self.add_module(name, child)
        for name, p in backbone.named_parameters(recurse=False):
            self.register_parameter(name, p)
        for name, b in backbone.named_buffers(recurse=False):
            self.register_buffer(name, b)
        self.config = config

    @classmethod
    def create(cls, arch: str, objective: str, n_categories: int = 117, n_identities: int = 548,
               seed: int | None = None, **config: Any) -> "LatentNet":
        """A randomly initialised network for ``objective`` (seeded when ``seed`` is given)."""
        cfg = LatentConfig(arch=arch, objective=objective,
                           layout=output_layout(objective, n_categories, n_identities),
                           n_categories=n_categories, n_identities=n_identities, **config)
        if seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return cls(build_backbone(arch, cfg.head_size), cfg)
        return cls(build_backbone(arch, cfg.head_size), cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def train(self, mode: bool = True) -> "LatentNet":
        super().train(mode)
        self.backbone.training = mode
        return self

    @property
    def layers(self) -> list[str]:
        """Candidate layer names (docs/models.md) for ResNets; all leaf modules otherwise."""
        try:
            return resnet_layers(self.config.arch)
        except KeyError:
            return [n for n, m in self.named_modules() if n and not list(m.children())]

    def preprocess(self, images: Images) -> torch.Tensor:
        """Images (see :func:`as_batch`: paths, PIL images of any mode/size, uint8 arrays/tensors)
        -> normalised N x 3 x S x S float tensor."""
        size = self.config.input_size
        resample = getattr(Image.Resampling, self.config.interpolation.upper())
        arrays = [np.asarray(to_rgb(im).resize((size, size), resample), dtype=np.float32) / 255
                  for im in as_batch(images)]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        mean = torch.tensor(self.config.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.config.std).view(1, 3, 1, 1)
        return (batch - mean) / std

    @torch.inference_mode()
    def predict(self, images: Images, batch_size: int = 64) -> dict[str, np.ndarray]:
        """Latents of ``images`` in physical units: {x, y, z (m), rot_x, rot_y, rot_z (rad), category, identity}.

        Only the latents of the model's objective are returned; x, y, z are z-scores when the
        config says ``units: zscore``. ``images``: one or a list of image paths, PIL images, uint8
        H x W x 3 arrays/tensors, or a uint8 N x H x W x 3 array/tensor. Class latents come with
        their names (``category_name``) when the config lists them. A model without latent outputs
        (``untrained``, ``imagenet``) raises UserError.
        """
        self.require_latents()
        images = as_batch(images)
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        outputs = []
        for i in range(0, len(images), batch_size):
            x = self.preprocess(images[i:i + batch_size]).to(device)
            outputs.append(self(x).float().cpu().numpy())
        self.train(was_training)
        out = np.concatenate(outputs) if outputs else np.zeros((0, self.config.head_size), np.float32)
        return self.decode(out)

    def decode(self, raw_outputs: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        """The raw head (``net(x)``, or what ``timm.create_model("hf-hub:...")`` returns; N x units or
        one row) -> latents in physical units, exactly as :meth:`predict` returns them."""
        self.require_latents()
        out = torch.as_tensor(raw_outputs).detach().float().cpu().numpy()
        out = out[None] if out.ndim == 1 else out
        if out.ndim != 2 or out.shape[1] != self.config.head_size:
            raise ValueError(f"expected raw outputs N x {self.config.head_size}, got {out.shape}")
        latents = decode_outputs(out, self.config.layout, self.config.normalisation)
        for task, names in self.config.label_names.items():
            if task in latents:
                latents[f"{task}_name"] = np.asarray(names, dtype=object)[latents[task]]
        return latents

    def require_latents(self) -> None:
        """UserError when the network has no latent outputs (objective ``untrained``/``imagenet``)."""
        if not self.config.layout:
            raise UserError(f"{self.config.id or self.config.arch} (objective {self.config.objective}) has no "
                            "latent outputs to predict or evaluate; use its layer activations instead "
                            "(`latentzoo extract`)")


def as_batch(images: Images) -> list[Image.Image]:
    """One image or many -> a list of RGB PIL images (so every kind of input is resized the same way).

    Accepts a path (str/PathLike), a PIL image, a uint8 H x W x 3 or N x H x W x 3 array/tensor, or a
    list/tuple of paths, PIL images and H x W x 3 arrays. Files are read with
    :func:`latentzoo.images.load_image` (any mode, UserError naming an unreadable file).
    """
    if isinstance(images, (torch.Tensor, np.ndarray)):
        batch = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images)
        batch = batch[None] if batch.ndim == 3 else batch
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"expected a uint8 tensor N x H x W x 3 (or one H x W x 3 image), got "
                             f"{tuple(np.shape(images))} {images.dtype}")
        return [Image.fromarray(a) for a in batch]
    items = [images] if isinstance(images, (str, os.PathLike, Image.Image)) else list(images)
    return [_one_image(item) for item in items]


def _one_image(item: Any) -> Image.Image:
    if isinstance(item, (str, os.PathLike)):
        return load_image(item)
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (torch.Tensor, np.ndarray)):
        return as_batch(item)[0]
    raise TypeError(f"expected image paths, PIL images or uint8 arrays, got {type(item).__name__}")


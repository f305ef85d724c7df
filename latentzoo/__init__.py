"""latentzoo: CNNs trained on 3D-rendered images to estimate spatial latents (Xie et al., ICLR 2025)."""

__version__ = "0.1.0"

"""How to cite the work latentzoo reproduces: one text for the registry, model cards, reports and README."""

#: Xie et al., ICLR 2025 (the paper whose models, data generator and analyses latentzoo reproduces).
PAPER = ("Yudi Xie, Weichen Huang, Esther Alter, Jeremy Schwartz, Joshua B. Tenenbaum, James J. DiCarlo. "
         "\"Vision CNNs trained to estimate spatial latents learned similar ventral-stream-aligned "
         "representations.\" ICLR 2025.")

#: The COSYNE 2024 abstract that preceded it.
ABSTRACT = ("Yudi Xie, Esther Alter, Jeremy Schwartz, James J. DiCarlo. \"Learning only a handful of latent "
            "variables produces neural-aligned CNN models of the ventral stream.\" COSYNE 2024.")

BIBTEX = """@inproceedings{xie2025vision,
  title={Vision CNNs trained to estimate spatial latents learned similar ventral-stream-aligned representations},
  author={Xie, Yudi and Huang, Weichen and Alter, Esther and Schwartz, Jeremy and Tenenbaum, Joshua B. and DiCarlo, James J.},
  booktitle={International Conference on Learning Representations (ICLR)},
  year={2025}
}"""

ABSTRACT_BIBTEX = """@inproceedings{xie2024learning,
  title={Learning only a handful of latent variables produces neural-aligned CNN models of the ventral stream},
  author={Xie, Yudi and Alter, Esther and Schwartz, Jeremy and DiCarlo, James J.},
  booktitle={Computational and Systems Neuroscience (COSYNE)},
  year={2024}
}"""

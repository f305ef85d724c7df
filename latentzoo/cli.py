"""Console scripts ``latentzoo`` and ``brainscore``.

Each subcommand is one ``_cmd_<name>(args)`` function plus its argparse set-up in ``_parser()``.
Exit codes: 0 success, 1 a user or data error (one line on stderr; ``--debug``, before or after the
subcommand, for the traceback), 2 a bad command line (argparse), 130 interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, Sequence

from latentzoo.errors import UserError
from latentzoo.models.gram_scoring import PLS_METHODS
from latentzoo.registry import PROTOCOLS

_PROTOCOL_HELP = ("Brain-Score protocol: leaderboard (the authors' plugins exactly: Brain-Score's image loading, "
                  "behaviour at fc) or paper (latentzoo's image loading, behaviour at avgpool); default: the "
                  "model's (leaderboard for the authors' tdw-* ids, else paper); see docs/scoring.md")

_PLS_HELP = ("regression of -pls benchmarks: kernel (default: Brain-Score's PLS exactly, on n x n Gram "
             "matrices, a fraction of its memory and time) or brainscore (its own PLSRegression); see docs/scoring.md")

# Brain-Score must never pip-install or query EC2 metadata from inside latentzoo.
os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentzoo", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = _adder(sub)  # noqa: F841  (each command block below calls add(name, handler, help))

    m = add("models", _cmd_models, "list the zoo's model ids (registry.yaml + user registries)",
            example="latentzoo models --objective distance --arch r18")
    m.add_argument("--objective", help="only this objective (e.g. distance, all, untrained)")
    m.add_argument("--arch", help="only this architecture (r18, r50)")
    m.add_argument("--seed", type=int, help="only this seed")

    g = add("registry", _cmd_registry, "registry maintenance: `registry add FOLDER` registers a model folder, "
            "`registry pin [ID ...]` records sha256s (docs/zoo.md)",
            example="latentzoo registry add models/distance --id my-distance-r18\n"
                    "  latentzoo registry pin tdw-distance-r18")
    g.add_argument("action", choices=["add", "pin"], help="add: write a complete, sha256-pinned entry for a model "
                   "folder from its config.json; pin: download unpinned sources and record their sha256")
    g.add_argument("ids", nargs="*", metavar="ID", help="add: the model FOLDER; pin: ids, registered folders or "
                   "hf-hub:ORG/NAME (default: every unpinned download)")
    g.add_argument("--id", dest="model_id", help="add: id to register the folder as (default: its config's id, "
                   "else the folder's name)")
    g.add_argument("--registry", help="registry file to write (default: the user registry; "
                   "registry.yaml to pin the shipped one)")

    pu = add("publish", _cmd_publish, "upload a model (zoo id, folder or hf-hub:ORG/NAME) to the Hugging Face Hub "
             "and record the pinned hub source in the registry (docs/zoo.md)",
             example="latentzoo publish models/distance --repo my-org/distance-r18")
    pu.add_argument("source", metavar="SOURCE", help="zoo id (e.g. tdw-distance-r18), model folder or hf-hub:ORG/NAME")
    pu.add_argument("--repo", required=True, metavar="ORG/NAME", help="Hub model repo to create or update")
    pu.add_argument("--id", dest="model_id", help="registry id (default: the model's id or config id, else the folder's name)")
    pu.add_argument("--scores", metavar="FILE", help="scores.json of `brainscore score` to show on the model card")
    pu.add_argument("--registry", help="registry file to record the hub source in (default: the user registry)")

    dl = add("download", _cmd_download, "fetch models' weights into the cache for offline use (e.g. on an HPC node)",
             example="latentzoo download tdw-distance-r18 tdw-rotation-r18 hf-hub:my-org/distance-r18")
    dl.add_argument("ids", nargs="+", metavar="ID", help="zoo ids, model folders or hf-hub:ORG/NAME")

    lm = add("layermap", _cmd_layermap, "choose V1/V2/V4/IT layers with Brain-Score's layer selection",
             example="latentzoo layermap tdw-distance-r18 --benchmarks local:data/v4 local:data/it")
    lm.add_argument("model", help="zoo id, model folder or hf-hub:ORG/NAME")
    lm.add_argument("--benchmarks", nargs="+", required=True, metavar="B",
                    help="neural benchmarks (local:DIR or Brain-Score ids), one per region to choose")
    lm.add_argument("--layers", nargs="+", help="candidate layers (default: the --candidates list)")
    lm.add_argument("--candidates", choices=["fine", "leaderboard"], help="candidate list: fine (relu, every "
                    "block, avgpool, fc; the paper's) or leaderboard (conv1, layer1-4, fc; default: the protocol's)")
    lm.add_argument("--images", type=_positive, metavar="N", help="use at most N stimuli of each benchmark "
                    "(a fixed random subset; local:DIR and latentzoo.* benchmarks) for a quicker map")
    lm.add_argument("--registry", help="registry file to write (default: the user registry)")
    lm.add_argument("--batch-size", type=_positive, default=64, help="images per forward pass (default 64)")
    lm.add_argument("--protocol", choices=PROTOCOLS, help=_PROTOCOL_HELP + "; also picks the default candidates "
                    "(leaderboard: conv1, layer1-4, fc; paper: every block) and becomes the id's default")
    lm.add_argument("--pls", choices=PLS_METHODS, default="kernel", help=_PLS_HELP + "; here brainscore runs "
                    "Brain-Score's LayerSelection procedure: LayerPCA, then LayerScores (docs/benchmarks-local.md)")

    sm = add("submission", _cmd_submission, "write a Brain-Score plugin zip for published models (docs/zoo.md)",
             example="latentzoo submission my-distance-r18 --out latentzoo_plugin.zip")
    sm.add_argument("ids", nargs="+", metavar="ID", help="zoo ids, model folders or hf-hub:ORG/NAME whose weights "
                    "are on the Hub (`latentzoo publish`)")
    sm.add_argument("--out", required=True, help="zip file to write")
    sm.add_argument("--plugin", default="latentzoo", help="plugin folder name (default latentzoo)")

    r = add("render", _cmd_render, "render a labelled dataset of single 3D objects (layout: docs/datasets.md)",
            example="latentzoo render --out data/quick --images 2000 --size 64 --workers 2")
    r.add_argument("--out", required=True, help="dataset directory (created; an interrupted render resumes)")
    r.add_argument("--images", type=int, default=1000, help="number of images (default 1000)")
    r.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    r.add_argument("--library", default="procedural",
                   help="object library: procedural (default), 0ad, tdw117 or tdw<N> (tdw backend)")
    r.add_argument("--seed", type=int, default=0, help="dataset seed; image i is a pure function of (seed, i)")
    r.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    r.add_argument("--backend", default="embedded", help="embedded (default, moderngl/EGL) or tdw")
    r.add_argument("--backgrounds", default="procedural", help="none | procedural (default) | photos | 0ad")
    r.add_argument("--categories", nargs="+", metavar="NAME", help="render only these categories (TDW-N style)")
    r.add_argument("--centered", action="store_true", help="object centre always on the optical axis (x = y = 0)")
    r.add_argument("--pose", choices=["face-camera", "uniform"], default="face-camera",
                   help="object rotation: face-camera (default; the paper's +-45 degrees pitch/yaw/roll about "
                        "facing the camera) or uniform (any rotation, uniform over SO(3))")
    r.add_argument("--balance", choices=["categories", "models"], default="categories",
                   help="categories (default; the authors' balance: equal images per category, then per model "
                        "within it, in each split) or models (every model equally likely)")
    r.add_argument("--models-per-category", type=int, metavar="K",
                   help="draw only the first K object models of each category (default: all)")
    r.add_argument("--shards", metavar="A:B", help="render only global shards A..B-1 (for job arrays)")
    r.add_argument("--shard-size", type=int, default=1000, help="images per shard (default 1000)")
    r.add_argument("--test-fraction", type=float, default=0.1, help="fraction of images in the test split (default 0.1)")
    r.add_argument("--msaa", type=int, default=4, help="multisample anti-aliasing samples (default 4)")
    r.add_argument("--fov", type=float, default=60.0, help="vertical field of view in degrees (default 60)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--tdw-build", metavar="PATH", help="tdw backend: TDW.x86_64 to launch, one per worker "
                   "(default $TDW_BUILD_PATH, else ~/tdw_build/TDW/TDW.x86_64)")
    r.add_argument("--tdw-port", type=int, metavar="PORT", help="tdw backend: connect to a build started by hand "
                   "on this port instead of launching one")

    s = add("show", _cmd_show, "write a contact sheet PNG of a dataset with its labels",
            example="latentzoo show data/quick --n 16")
    s.add_argument("dataset", help="dataset directory")
    s.add_argument("--out", help="PNG path (default DATASET/contact_sheet.png)")
    s.add_argument("--n", type=_positive, default=32, help="number of images (default 32)")
    s.add_argument("--split", default="test", help="split to show (default test)")

    a = add("assets", _cmd_assets, "list (and import) object libraries and background sets",
            example="latentzoo assets\n  latentzoo assets import 0ad")
    actions = a.add_subparsers(dest="action", metavar="ACTION")
    imp = actions.add_parser("import", help="import Debian's 0ad-data meshes into the local cache (library 0ad)",
                             description="import Debian's 0ad-data meshes into the local cache (library 0ad)",
                             parents=[_debug_flag()])
    imp.add_argument("library", choices=["0ad"], help="library to import")
    imp.add_argument("--source", help="0 A.D. data folder (default /usr/share/games/0ad)")
    imp.add_argument("--cache", help="cache folder (default $LATENTZOO_CACHE/0ad, else ~/.cache/latentzoo/0ad)")
    imp.add_argument("--categories", help="curated category list YAML (default: the packaged list)")
    imp.add_argument("--faces", type=int, default=5000, help="decimate meshes to at most this many faces (default 5000)")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")

    q = add("quickstart", _cmd_quickstart, "the whole study, small: render, train, register, score, reproduce -> HTML report",
            "latentzoo quickstart --out qs-big --images 20000 --steps 2000 --size 64 --device cuda")
    q.description = ("Render a small labelled dataset, train distance/translation/rotation/category ResNet-18s\n"
                     "and an untrained one, register them (OUT/registry.yaml), score them on the spatial-latent\n"
                     "Brain-Score benchmarks and write one HTML report of the paper's analyses\n"
                     "(OUT/report/index.html, the `reproduce` report). About 14 minutes on 2 CPU cores with the\n"
                     "defaults; a rerun resumes. Scale it up with --images, --steps, --size and --device.")
    q.add_argument("--out", default="quickstart", help="output directory (default ./quickstart)")
    q.add_argument("--images", type=_positive, default=6000, help="images to render (default 6000; 10%% are the test split)")
    q.add_argument("--render-size", type=_positive, default=64, help="rendered image side in px (default 64)")
    q.add_argument("--size", type=_positive, default=32, help="training/evaluation input side in px (default 32)")
    q.add_argument("--steps", type=_positive, default=250, help="training steps per objective (default 250)")
    q.add_argument("--batch-size", type=_positive, default=32, help="training batch size (default 32)")
    q.add_argument("--rotation-scale", type=_positive, default=2, help="rotation, the slowest objective to learn, "
                   "trains this many times the steps at this many times the batch size (default 2)")
    q.add_argument("--parallel", type=_positive, default=2, help="trainings at a time, each in its own process "
                   "with cores/parallel threads (default 2)")
    q.add_argument("--library", help="object library (default: 0ad when imported, else procedural)")
    q.add_argument("--categories", nargs="+", metavar="NAME", help="categories to render (default: 10 procedural "
                   "families without a vertical symmetry axis; every category of another library)")
    q.add_argument("--backgrounds", default="none", help="none (default: plain grey) | procedural | photos | 0ad")
    q.add_argument("--fov", type=float, default=35.0, help="vertical field of view in degrees (default 35: objects "
                   "1.7x larger in the frame than render's 60)")
    q.add_argument("--seed", type=int, default=0, help="dataset and training seed (default 0)")
    q.add_argument("--workers", type=_positive, default=1, help="render processes and data-loading workers (default 1)")
    q.add_argument("--device", default="auto", help="training device: auto (default), cpu, cuda")
    q.add_argument("--benchmark-images", type=_positive, default=320,
                   help="spatial-benchmark stimuli to use (default 320 of their 640)")
    q.add_argument("--quiet", action="store_true", help="no progress bars")

    t = add("train", _cmd_train, "train a network on a rendered dataset for one objective (torchrun for DDP)",
            example="latentzoo train --data data/quick --objective distance --steps 500 --size 64 "
                    "--out models/distance\n  torchrun --nproc_per_node 4 -m latentzoo.cli train ... (DDP)")
    t.add_argument("--data", required=True, help="rendered dataset directory")
    t.add_argument("--objective", required=True, help="distance, translation, rotation, category, identity, "
                   "all or a combination such as distance-translation")
    t.add_argument("--arch", default="r18", help="r18 (default), r50, resnetNN or any timm model name")
    t.add_argument("--seed", type=int, default=0, help="initialisation and data-order seed (default 0)")
    t.add_argument("--steps", type=int, required=True, help="optimiser steps in total")
    t.add_argument("--out", required=True, help="model folder to write (training state goes to OUT/train/)")
    t.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint")
    t.add_argument("--batch-size", type=int, default=64, help="global batch over all ranks (default 64)")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    t.add_argument("--size", type=_positive, default=224, help="input side in pixels (default 224)")
    t.add_argument("--eval-every", type=int, default=0, help="evaluate on the test split every N steps (0: at the end)")
    t.add_argument("--eval-images", type=int, help="at most this many test images for the periodic evaluations")
    t.add_argument("--checkpoint-every", type=int, default=1000, help="checkpoint every N steps (default 1000)")
    t.add_argument("--workers", type=int, default=2, help="data loader worker processes per rank (default 2)")
    t.add_argument("--accumulate", type=int, default=1, help="micro-batches per step (gradient accumulation)")
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--device", default="auto", help="auto (default: this rank's GPU, else CPU), cpu, cuda, cuda:N")
    t.add_argument("--snapshot-steps", type=int, nargs="+", default=[], metavar="N",
                   help="also keep the model folder of these steps in OUT/snapshots/step-N/ (docs/training.md)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    an = add("analyze", _cmd_analyze, "compare models layer by layer (CKA, RSA, MDS, decoding, alignment): HTML report",
             example="latentzoo analyze models/distance models/rotation --data data/quick --out report")
    an.add_argument("models", nargs="+", metavar="MODEL", help="zoo ids or model folders (at least two)")
    an.add_argument("--data", required=True, help="rendered dataset directory")
    an.add_argument("--out", required=True, help="report folder (index.html, PNG/SVG figures, CSV tables, cache/)")
    an.add_argument("--layers", nargs="+", help="layers to compare (default: the paper's layer1.0 ... layer4.0, "
                    "avgpool, fc)")
    an.add_argument("--split", default="test", help="dataset split (default test)")
    an.add_argument("--n-images", type=_positive, help="first N images of the split (default all)")
    an.add_argument("--brainscore-results", nargs="+", default=[], metavar="FILE",
                    help="scores.csv/json files of `brainscore score` (or model,benchmark,region,score[,performance])")
    an.add_argument("--reference", help="model the similarity curves compare with (default: the first)")
    an.add_argument("--compare", nargs=2, metavar=("GROUP_A", "GROUP_B"),
                    help="Mann-Whitney test of decoding scores between two objectives")
    an.add_argument("--protocol", choices=["default", "paper"], default="default",
                    help="default, or paper: the paper's flattened CKA, group statistics, decoding and pixel "
                         "baseline on 2,000 images (docs/analysis.md)")
    an.add_argument("--group", action="append", default=[], metavar="NAME=MODEL,MODEL,...",
                    help="put models (as given) in a named group (repeatable; default group: the objective)")
    an.add_argument("--pooling", default="avg", help="avg (default), none, or K for K x K spatial pooling")
    an.add_argument("--batch-size", type=_positive, default=64, help="images per forward pass (default 64)")
    an.add_argument("--device", help="torch device (default: the model's)")
    an.add_argument("--quiet", action="store_true", help="no progress bar")

    rp = add("reproduce", _cmd_reproduce, "the paper's tables and figures that the given models allow: HTML + CSVs",
             example="latentzoo reproduce --models runs/distance-s0 runs/category-s0 runs/untrained "
                     "--data data/full data/one-category --out repro")
    rp.description = rp.description + " (docs/analysis.md)"
    rp.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                    help="model folders (their snapshots/step-N/ included) or zoo ids")
    rp.add_argument("--data", nargs="+", required=True, metavar="DIR",
                    help="rendered datasets: the first is the evaluation set; all are matched with the models' "
                         "training data (size, variability)")
    rp.add_argument("--out", required=True, help="report folder (index.html, figures, CSV tables, cache/, scores/)")
    rp.add_argument("--benchmarks", nargs="+", metavar="B",
                    help="benchmarks to score models that have no scores yet (default: the public ones when "
                         "reachable, else latentzoo.*; 'none': do not score)")
    rp.add_argument("--brainscore-results", nargs="+", default=[], metavar="FILE",
                    help="scores.csv/json files (model,benchmark,region,score) to use instead of scoring")
    rp.add_argument("--group", action="append", default=[], metavar="NAME=MODEL,MODEL,...",
                    help="put models (as given) in a named group (repeatable; default: objective + variability)")
    rp.add_argument("--n-images", type=_positive, default=2000, help="evaluation images (default 2000)")
    rp.add_argument("--benchmark-images", type=_positive, metavar="N",
                    help="score on the first N stimuli of local:/latentzoo.* benchmarks (default all)")
    rp.add_argument("--layer-map", nargs=4, metavar=("V1=L", "V2=L", "V4=L", "IT=L"),
                    help="region -> layer map for models without one (default: Brain-Score's layer selection "
                         "over the fine candidates; snapshots take their final model's)")
    rp.add_argument("--batch-size", type=_positive, default=64, help="images per forward pass (default 64)")
    rp.add_argument("--device", help="torch device (default: the model's)")
    rp.add_argument("--jobs", type=int, default=-1, help="models decoded at a time (default -1: one per core)")
    rp.add_argument("--quiet", action="store_true", help="no progress bar")

    x = add("extract", _cmd_extract, "layer activations of a model on an image folder: OUT/<layer>.npy + images.txt",
            example="latentzoo extract tdw-distance-r18 --images photos/ --layers layer4.1.relu avgpool --out feats/")
    x.add_argument("model", help="zoo id, model folder, hf-hub:ORG/NAME or a timm model name (pretrained)")
    x.add_argument("--images", required=True, metavar="DIR", help="image folder (recursive; sorted file order)")
    x.add_argument("--layers", nargs="+", help="module names (default: a zoo model's candidate layers)")
    x.add_argument("--out", required=True, help="output folder (rerun to resume; docs/zoo.md)")
    x.add_argument("--pooling", default="none", help="none (default: flattened C x H x W), avg, or K for K x K")
    x.add_argument("--batch-size", type=_positive, default=64, help="images per forward pass (default 64)")
    x.add_argument("--device", help="torch device (default: cpu)")
    x.add_argument("--quiet", action="store_true", help="no progress bar")

    e = add("evaluate", _cmd_evaluate, "test metrics (R^2, RMSE, angular error, top-1, performance) of a model",
            example="latentzoo evaluate models/distance --data data/quick")
    e.add_argument("model", help="model folder or zoo id")
    e.add_argument("--data", required=True, help="rendered dataset directory")
    e.add_argument("--split", default="test", help="split to evaluate (default test)")
    e.add_argument("--max-images", type=_positive, help="evaluate at most this many images")
    e.add_argument("--batch-size", type=_positive, default=128, help="images per forward pass (default 128)")
    e.add_argument("--workers", type=int, default=2, help="data loader worker processes (default 2)")
    e.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    e.add_argument("--out", help="also write the metrics to this JSON file")
    return p


def _cmd_render(args: argparse.Namespace) -> None:
    from latentzoo.rendering import render_dataset

    for var, value in (("TDW_BUILD_PATH", args.tdw_build), ("TDW_PORT", args.tdw_port)):
        if value is not None:  # read by every (spawned) worker's tdw backend; not part of the dataset's plan
            os.environ[var] = str(value)

    ds = render_dataset(args.out, images=args.images, size=args.size, seed=args.seed, library=args.library,
                        backend=args.backend, backgrounds=args.backgrounds, categories=args.categories,
                        centered=args.centered, pose=args.pose, balance=args.balance,
                        models_per_category=args.models_per_category, workers=args.workers, shards=args.shards,
                        shard_size=args.shard_size, test_fraction=args.test_fraction, msaa=args.msaa,
                        fov_deg=args.fov, progress=not args.quiet)
    if ds is None:
        print(f"rendered shards {args.shards} of {args.out}; other shards are still missing "
              f"(the run that completes the last shard writes dataset.json)")
    else:
        print(f"{ds.root}: {ds.meta['splits']['train']} train + {ds.meta['splits']['test']} test images, "
              f"{len(ds.meta['shards'])} shards")


def _cmd_show(args: argparse.Namespace) -> None:
    from pathlib import Path

    from latentzoo.rendering.contact import contact_sheet

    out = contact_sheet(args.dataset, args.out or Path(args.dataset) / "contact_sheet.png", n=args.n, split=args.split)
    print(out)


def _cmd_assets(args: argparse.Namespace) -> None:
    if args.action == "import":
        return _import_0ad(args)
    from latentzoo.rendering.backgrounds import BACKGROUND_KINDS
    from latentzoo.rendering.libraries import LIBRARIES, get_library

    for name in LIBRARIES:
        try:
            lib = get_library(name)
        except UserError as e:
            print(f"library {name}: not available ({e})")
            continue
        print(f"library {name}: {len(lib.categories)} categories, {len(lib.identities)} identities; {lib.attribution}")
    print(f"backgrounds: {', '.join(BACKGROUND_KINDS)}")


def _import_0ad(args: argparse.Namespace) -> None:
    from latentzoo.rendering.libraries.zeroad import import_0ad

    if args.faces < 4:
        raise UserError(f"--faces must be at least 4, got {args.faces}")
    r = import_0ad(args.source, args.cache, args.categories, target_faces=args.faces, progress=not args.quiet)
    print(f"{r.cache}: {r.categories} categories, {r.identities} identities, {r.backgrounds} backgrounds; "
          f"faces {r.faces_before} -> {r.faces_after} after decimation; {len(r.skipped)} looks skipped; "
          f"{r.seconds:.0f} s")


def _cmd_quickstart(args: argparse.Namespace) -> None:
    from latentzoo.quickstart import QuickstartConfig, run_quickstart

    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"  # Brain-Score's own progress bars too
    cfg = QuickstartConfig(out=args.out, images=args.images, render_size=args.render_size, size=args.size,
                           steps=args.steps, batch_size=args.batch_size, rotation_scale=args.rotation_scale,
                           parallel=args.parallel, library=args.library,
                           categories=tuple(args.categories) if args.categories else None,
                           backgrounds=args.backgrounds, fov=args.fov, seed=args.seed,
                           workers=args.workers, device=args.device, benchmark_images=args.benchmark_images,
                           progress=not args.quiet)
    print(f"report: {run_quickstart(cfg)}")


def _cmd_train(args: argparse.Namespace) -> None:
    from latentzoo.training import TrainConfig, train

    cfg = TrainConfig(data=args.data, objective=args.objective, out=args.out, arch=args.arch, seed=args.seed,
                      steps=args.steps, batch_size=args.batch_size, lr=args.lr, size=args.size,
                      eval_every=args.eval_every, eval_images=args.eval_images,
                      checkpoint_every=args.checkpoint_every, workers=args.workers,
                      accumulate=args.accumulate, compile=args.compile, device=args.device,
                      progress=not args.quiet, snapshot_steps=tuple(args.snapshot_steps))
    print(train(cfg, resume=args.resume))


def _cmd_analyze(args: argparse.Namespace) -> None:
    from latentzoo.analysis.groups import labels_of, parse_groups
    from latentzoo.analysis.report import analyze

    pooling = int(args.pooling) if args.pooling.isdigit() else args.pooling
    index = analyze(args.models, args.data, args.out, layers=args.layers, split=args.split,
                    n_images=args.n_images, brainscore_results=args.brainscore_results,
                    reference=args.reference, compare=tuple(args.compare) if args.compare else None,
                    pooling=pooling, batch_size=args.batch_size, device=args.device,
                    progress=not args.quiet, protocol=args.protocol,
                    groups=labels_of(parse_groups(args.group)))
    print(f"wrote {index}")


def _cmd_reproduce(args: argparse.Namespace) -> None:
    from latentzoo.analysis.groups import labels_of, parse_groups
    from latentzoo.analysis.reproduce import reproduce

    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"  # Brain-Score's own progress bars too
    index = reproduce(args.models, args.data, args.out, benchmarks=args.benchmarks,
                      brainscore_results=args.brainscore_results, groups=labels_of(parse_groups(args.group)),
                      n_images=args.n_images, batch_size=args.batch_size, device=args.device, n_jobs=args.jobs,
                      progress=not args.quiet, layers=_layer_map(args.layer_map),
                      benchmark_images=args.benchmark_images)
    print(f"wrote {index}")


def _cmd_extract(args: argparse.Namespace) -> None:
    from latentzoo.analysis.extract import extract_folder

    pooling = int(args.pooling) if args.pooling.isdigit() else args.pooling
    written = extract_folder(args.model, args.images, args.layers, args.out, pooling=pooling,
                             batch_size=args.batch_size, device=args.device, progress=not args.quiet)
    for layer, path in written.items():
        print(f"{layer}: {path}")
    print(f"rows: {args.out}/images.txt")


def _layer_map(items: Sequence[str] | None) -> dict[str, str] | None:
    """``["V1=layer1.0.relu", ...]`` -> ``{"V1": "layer1.0.relu", ...}`` (None stays None)."""
    if items is None:
        return None
    pairs = dict(item.partition("=")[::2] for item in items)
    if sorted(pairs) != sorted(("V1", "V2", "V4", "IT")) or not all(pairs.values()):
        raise UserError(f"--layer-map needs V1=LAYER V2=LAYER V4=LAYER IT=LAYER, got {' '.join(items)}")
    return pairs


def _cmd_evaluate(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from latentzoo import from_pretrained
    from latentzoo.datasets import RenderedDataset
    from latentzoo.fileio import write_json_atomic
    from latentzoo.training.metrics import evaluate
    from latentzoo.training.trainer import pick_device

    net = from_pretrained(args.model).to(pick_device(args.device))
    metrics = evaluate(net, RenderedDataset(args.data), args.split, batch_size=args.batch_size,
                       workers=args.workers, max_images=args.max_images)
    if args.out:
        write_json_atomic(Path(args.out), metrics)
    print(json.dumps(metrics, indent=2))


def _cmd_models(args: argparse.Namespace) -> None:
    from latentzoo.registry import load_registry

    entries = load_registry().filter(args.objective, args.arch, args.seed)
    for e in entries:
        spec = e.weights[e.weights_kind]
        pinned = "" if e.weights_kind == "init" else ("pinned" if spec.get("sha256") else "unpinned")
        print(f"{e.id:40s} {e.arch:4s} {e.objective:30s} seed {e.seed:<3d} {e.weights_kind:4s} {pinned}")
    print(f"{len(entries)} models")


def _cmd_registry(args: argparse.Namespace) -> None:
    from latentzoo.registry import default_user_registry, load_registry, write_override
    from latentzoo.weights import resolve, source_sha256

    target = args.registry or default_user_registry()
    if args.action == "add":
        from latentzoo.publish import register_folder

        if len(args.ids) != 1:
            raise UserError("registry add takes one model FOLDER")
        entry = register_folder(args.ids[0], args.model_id, target)
        layers = ", ".join(f"{r} {entry.layers[r]}" for r in ("V1", "V2", "V4", "IT") if r in entry.layers)
        print(f"{entry.id}: {entry.arch} {entry.objective} seed {entry.seed}, {entry.dataset}, "
              f"{entry.input_size} px, layers: {layers or 'none yet (`latentzoo layermap`)'}; written to {target}")
        return
    registry = load_registry()
    entries = ([resolve(i, registry) for i in args.ids] if args.ids else
               [e for e in registry if e.weights_kind != "init" and not e.weights[e.weights_kind].get("sha256")])
    for e in entries:
        if e.id not in registry:
            raise UserError(f"{e.id} is not registered; `latentzoo registry add FOLDER` registers a folder, "
                            "`latentzoo publish` a Hub repo")
        sha = source_sha256(e)
        write_override(target, e.id, {"weights": {e.weights_kind: {"sha256": sha}}})
        print(f"{e.id} {sha}")
    print(f"pinned {len(entries)} model(s) in {target}")


def _cmd_publish(args: argparse.Namespace) -> None:
    from latentzoo.publish import publish

    done = publish(args.source, args.repo, args.model_id, args.registry, args.scores)
    print(f"published {done.id} to hf-hub:{done.repo}@{done.revision} (model.safetensors sha256 {done.sha256}); "
          f"recorded in {done.registry}")


def _cmd_download(args: argparse.Namespace) -> None:
    from latentzoo.registry import load_registry
    from latentzoo.weights import prefetch

    registry = load_registry()
    for name in args.ids:
        print(prefetch(name, registry))


def _cmd_layermap(args: argparse.Namespace) -> None:
    from latentzoo.hub import update_card_fields
    from latentzoo.models.brainscore import choose_layers
    from latentzoo.registry import default_user_registry, load_registry, write_override
    from latentzoo.weights import resolve

    registry = load_registry()
    entry = resolve(args.model, registry)  # unknown ids fail before any work
    folder = entry.weights["folder"]["path"] if entry.weights_kind == "folder" else None
    if entry.id not in registry and folder is None:
        raise UserError(f"{args.model} is not registered, so the layer map has nowhere to go; "
                        f"`latentzoo publish` or `latentzoo registry add` it first")
    protocol = args.protocol or entry.protocol
    scores = choose_layers(args.model, args.benchmarks, args.layers, registry, args.batch_size, protocol, args.pls,
                           candidates=args.candidates, images=args.images)
    for region, by_layer in scores.items():
        print(f"{region}: " + ", ".join(f"{layer} {value:.3f}" for layer, value in by_layer.items()))
    chosen = {region: next(iter(by_layer)) for region, by_layer in scores.items()}
    if entry.id in registry:
        target = args.registry or default_user_registry()
        write_override(target, entry.id, {"layers": chosen, "protocol": protocol})
    else:  # an unregistered folder keeps its layer map in its own config (`registry add` reads it)
        target = update_card_fields(folder, layers={**entry.layers, **chosen})
    print(f"{entry.id}: " + ", ".join(f"{r} -> {layer}" for r, layer in chosen.items())
          + f" under protocol {protocol} (written to {target})")


def _cmd_submission(args: argparse.Namespace) -> None:
    from latentzoo.models.submission import write_submission

    print(write_submission(args.ids, args.out, plugin=args.plugin))


def _brainscore_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brainscore", description="Score latentzoo models with Brain-Score.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = _adder(sub)
    s = add("score", _cmd_score, "score a zoo model, model folder or Brain-Score model (default: the paper's five public benchmarks)",
            example="brainscore score --model tdw-distance-r18 --benchmark latentzoo.Distance-IT\n"
                    "  brainscore score --model alexnet --benchmark local:data/it")
    s.add_argument("--model", required=True, help="zoo id, model folder or Brain-Score model id (e.g. alexnet)")
    s.add_argument("--benchmark", action="extend", nargs="+", metavar="B",
                   help="Brain-Score benchmark id or local:DIR (repeatable; default: the five public ones)")
    s.add_argument("--out", help="folder for scores.csv and scores.json (default ./scores-<model>)")
    s.add_argument("--batch-size", type=_positive, default=64, help="images per forward pass (default 64)")
    s.add_argument("--protocol", choices=PROTOCOLS, help=_PROTOCOL_HELP)
    s.add_argument("--pls", choices=PLS_METHODS, default="kernel", help=_PLS_HELP)
    s.add_argument("--images", type=_positive, metavar="N", help="use at most N stimuli of each benchmark "
                   "(a fixed random subset; local:DIR and latentzoo.* benchmarks)")
    add("list", _cmd_bslist, "list the zoo ids this command can score, the benchmarks and the default ones",
        example="brainscore list")
    return p


def _cmd_score(args: argparse.Namespace) -> None:
    from pathlib import Path

    from latentzoo.models.brainscore import PUBLIC_BENCHMARKS, neural_mean, score, write_scores

    table = score(args.model, args.benchmark or PUBLIC_BENCHMARKS, batch_size=args.batch_size,
                  protocol=args.protocol, pls=args.pls, images=args.images)
    columns = ["protocol", "pls", "benchmark", "region", "score", "raw", "ceiling"]
    print(table[columns].to_string(index=False, float_format="%.4f"))
    print(f"neural mean: {neural_mean(table):.4f}")
    out = args.out or f"scores-{Path(args.model).name}"
    for path in write_scores(table, out):
        print(f"wrote {path}")


def _cmd_bslist(args: argparse.Namespace) -> None:
    from latentzoo.models.brainscore import PUBLIC_BENCHMARKS, benchmark_ids
    from latentzoo.registry import load_registry

    ids = load_registry().ids
    print(f"models ({len(ids)} zoo ids; model folders, hf-hub:ORG/NAME and Brain-Score model ids work too):")
    print("\n".join(f"  {i}" for i in ids))
    benchmarks = benchmark_ids()
    print(f"benchmarks ({len(benchmarks)}; local:DIR builds one from files):")
    print("\n".join(f"  {b}" for b in benchmarks))
    print("default benchmarks: " + ", ".join(PUBLIC_BENCHMARKS))


def _adder(sub: argparse._SubParsersAction) -> Callable[..., argparse.ArgumentParser]:
    """``add(name, func, help, example=None)`` registers a subcommand whose handler is ``func(args)``;
    ``help`` is also its ``--help`` description and ``example`` its epilog; it accepts ``--debug``."""

    def add(name: str, func: Callable[[argparse.Namespace], int | None], help: str,
            example: str | None = None) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, parents=[_debug_flag()],
                            epilog=f"example:\n  {example}" if example else None,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(func=func)
        return sp

    return add


def _debug_flag() -> argparse.ArgumentParser:
    """Parent parser giving a subcommand ``--debug`` (default suppressed, so the top-level value stands)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    return parent


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _one_line(error: BaseException) -> str:
    """The error as one line: a UserError's message, else its type and first line plus a --debug hint."""
    lines = str(error).strip().splitlines() or [""]
    if len(lines) > 2 and lines[1].startswith("Original Traceback"):  # re-raised from a DataLoader worker
        lines = [lines[-1].split(": ", 1)[-1]]
    text = lines[0]
    if isinstance(error, UserError):
        return text
    if isinstance(error, OSError) and error.filename:
        return f"{error.strerror or text}: {error.filename}"
    return f"{type(error).__name__}: {text} (unexpected; rerun with --debug for the traceback)"


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # one line for every failure; the traceback only with --debug
        if args.debug:
            traceback.print_exc()
        print(f"{parser.prog} {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``latentzoo`` command."""
    return _run(_parser(), argv)


def brainscore_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``brainscore`` command: ``brainscore score --model ID [--benchmark B ...]``, ``list``."""
    return _run(_brainscore_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())

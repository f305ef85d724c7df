"""Console scripts ``latentzoo`` and ``brainscore``.

Each subcommand is one ``_cmd_<name>(args)`` function plus its argparse set-up in ``_parser()``.
Exit codes: 0 success, 1 a user or data error (one line on stderr; ``--debug`` for the traceback),
2 a bad command line (argparse).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, Sequence

from latentzoo.errors import UserError

# Brain-Score must never pip-install or query EC2 metadata from inside latentzoo.
os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentzoo", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = _adder(sub)  # noqa: F841  (each command block below calls add(name, handler, help))

    t = add("train", _cmd_train, "train a network on a rendered dataset for one objective (torchrun for DDP)")
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
    t.add_argument("--size", type=int, default=224, help="input side in pixels (default 224)")
    t.add_argument("--eval-every", type=int, default=0, help="evaluate on the test split every N steps (0: at the end)")
    t.add_argument("--eval-images", type=int, help="at most this many test images for the periodic evaluations")
    t.add_argument("--checkpoint-every", type=int, default=1000, help="checkpoint every N steps (default 1000)")
    t.add_argument("--workers", type=int, default=2, help="data loader worker processes per rank (default 2)")
    t.add_argument("--accumulate", type=int, default=1, help="micro-batches per step (gradient accumulation)")
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--device", default="auto", help="auto (default: this rank's GPU, else CPU), cpu, cuda, cuda:N")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    e = add("evaluate", _cmd_evaluate, "test metrics (R^2, RMSE, angular error, top-1, performance) of a model")
    e.add_argument("model", help="model folder or zoo id")
    e.add_argument("--data", required=True, help="rendered dataset directory")
    e.add_argument("--split", default="test", help="split to evaluate (default test)")
    e.add_argument("--max-images", type=int, help="evaluate at most this many images")
    e.add_argument("--batch-size", type=int, default=128)
    e.add_argument("--workers", type=int, default=2, help="data loader worker processes (default 2)")
    e.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    e.add_argument("--out", help="also write the metrics to this JSON file")
    return p


def _cmd_train(args: argparse.Namespace) -> None:
    from latentzoo.training import TrainConfig, train

    cfg = TrainConfig(data=args.data, objective=args.objective, out=args.out, arch=args.arch, seed=args.seed,
                      steps=args.steps, batch_size=args.batch_size, lr=args.lr, size=args.size,
                      eval_every=args.eval_every, eval_images=args.eval_images,
                      checkpoint_every=args.checkpoint_every, workers=args.workers,
                      accumulate=args.accumulate, compile=args.compile, device=args.device,
                      progress=not args.quiet)
    print(train(cfg, resume=args.resume))


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


def _adder(sub: argparse._SubParsersAction) -> Callable[..., argparse.ArgumentParser]:
    """``_add(name, func, help)`` registers a subcommand whose handler is ``func(args)``."""

    def add(name: str, func: Callable[[argparse.Namespace], int | None], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    return add


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        if args.debug:
            traceback.print_exc()
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``latentzoo`` command."""
    return _run(_parser(), argv)


def brainscore_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``brainscore`` command (score/list); filled in by the Brain-Score part."""
    raise SystemExit("brainscore: not available yet")


if __name__ == "__main__":
    sys.exit(main())

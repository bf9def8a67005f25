"""``python -m blender_instseg.ml <command>``: train, predict and evaluate the models of the zoo.

Runs in its own process with a Python that has torch (Blender's does not). torch is imported only
inside commands, so ``--help`` works anywhere and a missing torch is one clear line (exit 3).
Every failure a person can fix is one line on stderr plus an ``error`` event on stdout (exit 2).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("blender_instseg.ml.train", "train a model (--model NAME, default solov2) on a COCO dataset"),
    "predict": ("blender_instseg.ml.predict", "predict instance masks for images -> COCO results JSON"),
    "evaluate": ("blender_instseg.ml.evaluate_cmd", "predict a dataset split and write the evaluation report"),
    "models": ("blender_instseg.ml.models_cmd", "list the model architectures train --model accepts"),
}

TORCH_VERSION = "2.13.0"
EXIT_ERROR = 2
EXIT_NO_TORCH = 3


def _fail(message: str, code: int) -> int:
    from ..core import protocol

    message = " ".join(str(message).split())
    try:
        protocol.emit("error", message=message)
    except (OSError, ValueError):
        pass
    print(f"error: {message}", file=sys.stderr)
    return code


class UsageError(Exception):
    """A command line argparse refuses: reported as one ``error:`` line (no usage block), exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog.removeprefix('python -m blender_instseg.ml').strip() or 'ml'}: {message}")


def os_error_text(exc: OSError) -> str:
    """An OSError as a person reads it: what failed on which file, never ``[Errno N]`` or the hidden
    temporary name an atomic write was using (the file it stands for is named instead)."""
    from ..core.fileio import temp_target

    what = (exc.strerror or type(exc).__name__).rstrip(".").lower()
    name = exc.filename
    if name is None:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else what
    target = temp_target(name)
    return f"{what}: {target if target is not None else name}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m blender_instseg.ml", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module_name=module_name, _parser=p)
        _configure(name, p)
    return parser


def _configure(name: str, p: argparse.ArgumentParser) -> None:
    """Arguments are declared without importing torch (the command modules import it at the top)."""
    from . import cli_args

    getattr(cli_args, name)(p)


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Requirements argparse cannot express: ``train`` needs --data and --out except for ``--model list``;
    ``predict`` needs --images and --out, except in --serve mode where each request names its own."""
    for flag in ("--out", "--data", "--checkpoint", "--overlays", "--gt", "--init"):
        value = getattr(args, flag[2:], None)
        if isinstance(value, str) and not value.strip():
            parser.error(f"{flag} is empty")
    if any(not str(p).strip() for p in getattr(args, "images", None) or []):
        parser.error("--images is empty")  # '' would mean the current folder
    if getattr(args, "checkpoint", None) == "bundled":
        from .weights import BUNDLED

        args.checkpoint = str(BUNDLED)  # the shipped class-agnostic weights (category "object")
    if args.command == "train":
        missing = [flag for flag, value in (("--data", args.data), ("--out", args.out)) if not value]
        if missing and args.model != "list":
            parser.error(f"the following arguments are required: {', '.join(missing)}")
        return
    if args.command != "predict":
        return
    if args.serve:
        given = [flag for flag, value in (("--images", args.images), ("--out", args.out), ("--overlays", args.overlays),
                                          ("--gt", args.gt)) if value]
        if given:
            parser.error(f"predict --serve takes images and outputs per request on stdin, not {', '.join(given)}")
        return
    missing = [flag for flag, value in (("--images", args.images), ("--out", args.out)) if not value]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_args(args._parser, args)
    except UsageError as exc:
        return _fail(str(exc), EXIT_ERROR)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s",
                        stream=sys.stderr)
    # Libraries' warnings (matplotlib's font cache and config dir, torch's UserWarnings) are not the
    # user's to act on: they go to the log, shown with -v only, so stderr holds our own lines.
    logging.captureWarnings(True)
    quiet = logging.DEBUG if args.verbose else logging.ERROR
    for name in ("py.warnings", "matplotlib", "PIL"):
        logging.getLogger(name).setLevel(quiet)
    try:
        import torch  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising anything at import
        return _fail(f"torch is not installed in {sys.executable}; install torch=={TORCH_VERSION} "
                     f"(pip install torch=={TORCH_VERSION}) or pick a Python that has it ({type(exc).__name__})", EXIT_NO_TORCH)
    try:
        module = importlib.import_module(args._module_name)
        return int(module.run(args))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except OSError as exc:
        return _fail(os_error_text(exc) if exc.errno is not None else _first_line(exc), EXIT_ERROR)
    except ValueError as exc:
        return _fail(_first_line(exc), EXIT_ERROR)
    except RuntimeError as exc:  # torch errors (e.g. out of memory) -> still one line, never a traceback
        return _fail(f"{type(exc).__name__}: {_first_line(exc)}", EXIT_ERROR)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())

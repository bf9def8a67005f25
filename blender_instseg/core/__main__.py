"""``python -m blender_instseg.core <command>``: the bpy-free, torch-free tools.

Each command lives in its own module, which provides ``configure_parser(parser)`` and
``run(args) -> int``; modules are imported only when their command is used. The export commands
come from the output-format table (``formats.FORMATS``: a row's ``command``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .cliargs import OneLineParser
from .formats import FORMATS

#: command -> (module, help), in the order ``--help`` lists them
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("blender_instseg.core.validation.validate", "check a dataset the way a strict consumer would"),
    "merge": ("blender_instseg.core.merge", "join per-image records (one or more dataset folders) into COCO files"),
    **{fmt.command: (fmt.module, fmt.command_help) for fmt in FORMATS.values() if fmt.command is not None},
    "evaluate": ("blender_instseg.core.evaluation.evaluate",
                 "COCO mask AP, Boundary AP and breakdowns for a predictions file"),
}


def _chosen_command(argv: list[str]) -> str | None:
    """The command word in ``argv`` (first argument that names one), without parsing the rest."""
    for arg in argv:
        if arg in COMMANDS:
            return arg
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Build the parser; only the chosen command's module is imported, so one broken or slow
    module never takes the other commands down with it."""
    chosen = _chosen_command(sys.argv[1:] if argv is None else argv)
    parser = OneLineParser(prog="python -m blender_instseg.core", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.configure_parser(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except ValueError as exc:  # UsageError: one line, not usage + message
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s")
    try:
        return int(args._module.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

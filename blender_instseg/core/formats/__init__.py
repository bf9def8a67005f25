"""Output formats, and ``FORMATS``: the one table of the optional ones (name -> writer).

The merged COCO files (``annotations*.json``, written by ``dataset.merge_dataset``) are the base
format: every dataset has them and every optional format is built from them. An optional format
is one module here with ``write(dataset_root) -> {label: path}`` and one row of ``FORMATS``. The
table is read by everything that offers formats: the generator (``--export`` choices and help,
``write`` after the merge), the config (an ``output.export_<name>`` switch per row) and
``python -m blender_instseg.core`` (a row's ``command``), so nothing else needs to know the list.

This package imports no format module until one is written: the generator's CLI half and the
config read the table and must stay light.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


@dataclass(frozen=True)
class Format:
    """One optional output format: the module that writes it and how it is offered.

    ``module`` provides ``write(dataset_root: Path) -> dict[str, Path]``, run on a merged dataset
    folder (``annotations*.json`` present); it returns what it wrote, keyed by a label (the
    generator reports them in its ``done`` event). ``summary`` is the format's entry in
    ``--export``'s help. ``command`` is the ``python -m blender_instseg.core`` command that writes
    it for an existing dataset, ``command_help`` that command's help; the module then also provides
    ``configure_parser(parser)`` and ``run(args) -> int``. A format without a command of its own is
    written by another row's command (semantic maps: ``export-panoptic --semantic``).
    """

    module: str
    summary: str
    command: str | None = None
    command_help: str = ""


#: the optional output formats, in the order they are offered and written
FORMATS: dict[str, Format] = {
    "yolo": Format("blender_instseg.core.formats.yolo", "ultralytics YOLO-seg labels/",
                   command="export-yolo", command_help="write ultralytics YOLO-seg labels/ and dataset.yaml"),
    "semantic": Format("blender_instseg.core.formats.semantic", "semantic/ category maps"),
    "panoptic": Format("blender_instseg.core.formats.panoptic", "COCO panoptic/ + panoptic*.json",
                       command="export-panoptic",
                       command_help="write semantic/ maps and COCO panoptic/ + panoptic*.json "
                                    "from the instance-id maps"),
}


def check_names(names: Iterable[str]) -> None:
    """``ValueError`` (one line) naming the first name that is not a format of ``FORMATS``."""
    for name in names:
        if name not in FORMATS:
            raise ValueError(f"unknown output format {name!r} (known: {', '.join(FORMATS)})")


def write(dataset_root: str | Path, names: Iterable[str]) -> dict[str, Path]:
    """Write the formats ``names`` for a merged dataset, in table order; ``{label: path}`` of what was written."""
    wanted = set(names)
    check_names(sorted(wanted))
    written: dict[str, Path] = {}
    for name, fmt in FORMATS.items():
        if name in wanted:
            written.update(importlib.import_module(fmt.module).write(Path(dataset_root)))
    return written

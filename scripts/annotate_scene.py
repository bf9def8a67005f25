"""Annotate your own scene or animation: ``python scripts/annotate_scene.py --blend FILE --out DIR ARGS``,
or ``blender -b FILE -P scripts/annotate_scene.py -- --out DIR ARGS`` (the open file).

A thin entry point sharing scripts/generate.py's (repository root on ``sys.path``, pycocotools/OpenCV
made importable inside a Blender binary's own Python), which calls
``blender_instseg.blender.annotate_scene.main``. Run with ``--help`` for the options; docs/annotate.md
explains the files.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate  # noqa: E402  (scripts/generate.py: the shared entry)

if __name__ == "__main__":
    sys.exit(generate.main("blender_instseg.blender.annotate_scene", "scripts/annotate_scene.py"))

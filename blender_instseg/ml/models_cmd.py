"""``models``: the architectures ``train --model`` accepts, one line each (``--json``: one JSON object per line)."""

from __future__ import annotations

import argparse
import json


def print_models(as_json: bool = False) -> None:
    from .models import DEFAULT_ARCH, describe

    rows = describe()
    width = max(len(name) for name, _ in rows)
    for name, summary in rows:
        if as_json:
            print(json.dumps({"name": name, "summary": summary, "default": name == DEFAULT_ARCH}))
        else:
            print(f"{name:<{width}}  {summary}{'  (default)' if name == DEFAULT_ARCH else ''}")


def run(args: argparse.Namespace) -> int:
    print_models(as_json=bool(getattr(args, "json", False)))
    return 0

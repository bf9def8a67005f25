"""Writing a generator config back to a file: TOML (the subset a config needs) or JSON, by suffix.

Python reads TOML (``tomllib``) but does not write it, and no TOML writer is bundled with the
add-on. A generator config needs little of TOML: tables of sections, one level of inline tables
(``objects.per_category``), strings, booleans, integers, floats and flat lists. ``dump_toml``
writes exactly that subset and refuses anything else, and ``write_config`` reads what it wrote back
with ``tomllib`` before the file is replaced, so a saved file always loads (``load_config``).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

from .fileio import atomic_write_text
from .genconfig import GeneratorConfig

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value} has no place in a config")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string (ASCII, \\uXXXX escapes) is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v, where) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v, f'{where}.{k}')}" for k, v in value.items()) + "}"
    raise ValueError(f"{where}: cannot write a {type(value).__name__} to TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """``data`` as TOML: top-level values first, then one ``[table]`` per dict value; a dict inside a
    table becomes a ``[table.key]`` table whose own dict values are inline tables."""
    lines: list[str] = []
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    for key, value in data.items():
        if key not in tables:
            lines.append(f"{_key(key)} = {_value(value, key)}")
    for name, table in tables.items():
        lines += ["", f"[{_key(name)}]"]
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        for key, value in table.items():
            if key not in nested:
                lines.append(f"{_key(key)} = {_value(value, f'{name}.{key}')}")
        for key, value in nested.items():
            lines += ["", f"[{_key(name)}.{_key(key)}]"]
            lines += [f"{_key(k)} = {_value(v, f'{name}.{key}.{k}')}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def config_text(cfg: GeneratorConfig, path: str | Path) -> str:
    """The file text for ``cfg``: TOML for a ``.toml`` path (checked to read back equal), else JSON."""
    data = cfg.to_dict()
    if Path(path).suffix.lower() != ".toml":
        return json.dumps(data, indent=2) + "\n"
    text = dump_toml(data)
    if tomllib.loads(text) != data:  # pragma: no cover - dump_toml writes only what tomllib reads back
        raise ValueError("the config does not survive a TOML round trip; save it as .json")
    return text


def write_config(cfg: GeneratorConfig, path: str | Path) -> Path:
    """Write ``cfg`` (validated first) to ``path``, atomically; ``ValueError`` in one line on a bad config."""
    cfg.validate()
    return atomic_write_text(path, config_text(cfg, path))

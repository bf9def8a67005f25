"""Variant plans: which scenes the generator renders "around" which parent seeds (hard-scene mining).

A plan is a JSON list ``[{"seed": s, "count": c, "first": k0}, ...]`` (``first`` optional, default
0). Image ``i`` of a ``--variants-of PLAN.json`` run is the ``i``-th (parent seed, variant number)
pair in plan order: entry ``{"seed": s, "count": 3, "first": 2}`` expands to variants 2, 3, 4 of
``s``. ``first`` lets a later mining round ask for new variants of a seed an earlier round already
used, so two rounds never render the same image.

A variant's own seed is a pure function of (parent seed, variant number), so the plan alone fixes
every image bit for bit; the record stores it as ``seed`` together with ``parent_seed`` and
``variant``. Bpy-free: the loop writes plans, the generator reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .fileio import atomic_write_json, read_json

#: mixed into the variant seed so (parent, k) never collides with image_seed(global, index)'s input
_VARIANT_SALT = 0x7A41E7


@dataclass(frozen=True)
class PlanEntry:
    seed: int
    count: int
    first: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "count": self.count, "first": self.first}


#: the most images one dataset may hold: image ids stay 32-bit signed integers, which some COCO readers
#: store them in, and a typo such as ``--num-images 10**12`` is refused instead of started
MAX_IMAGES = 2**31 - 1


def image_seed(global_seed: int, index: int) -> int:
    """The per-image seed: a pure function of (global seed, index), so shards and reruns agree."""
    return int(np.random.SeedSequence([int(global_seed) & 0xFFFFFFFF, int(index)]).generate_state(1, np.uint32)[0])


def scene_of(index: int, frames: int) -> tuple[int, int]:
    """(scene, frame) of image ``index`` when every scene is ``frames`` images: index = scene * frames + frame."""
    return divmod(int(index), int(frames))


def scene_seed(global_seed: int, scene: int, frames: int) -> int:
    """The seed a scene is built from: the seed of its first frame, ``image_seed(global, scene * frames)``,
    so with one frame per scene it is the image seed every still dataset used."""
    return image_seed(global_seed, scene * frames)


def shard_indices(num_images: int, frames: int, shard: int, num_shards: int) -> Iterator[int]:
    """The image indices of one shard, in order: whole scenes ``s`` with ``s % num_shards == shard``, so a
    scene's frames are rendered by one process (one build per scene); with one frame per scene these
    are the indices ``i % num_shards == shard``."""
    scenes = -(-num_images // frames)
    for s in range(shard, scenes, num_shards):
        yield from range(s * frames, min((s + 1) * frames, num_images))


def in_shard(index: int, frames: int, shard: int, num_shards: int) -> bool:
    """Whether ``shard_indices`` of this shard holds ``index`` (below num_images)."""
    return (index // frames) % num_shards == shard


def variant_seed(parent_seed: int, variant: int) -> int:
    """The seed of variant ``variant`` of scene ``parent_seed`` (drives every perturbation draw)."""
    ss = np.random.SeedSequence([int(parent_seed) & 0xFFFFFFFF, int(variant), _VARIANT_SALT])
    return int(ss.generate_state(1, np.uint32)[0])


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def parse_plan(data: Any, where: str = "plan") -> list[PlanEntry]:
    """Check a plan's JSON value; one-line ``ValueError`` naming the first bad entry."""
    if not isinstance(data, list) or not data:
        raise ValueError(f"{where} must be a non-empty JSON list of {{\"seed\": S, \"count\": C}} objects")
    entries = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"{where} entry {i} must be an object with 'seed' and 'count'")
        unknown = sorted(set(item) - {"seed", "count", "first", "why"})
        if unknown:
            raise ValueError(f"{where} entry {i} has unknown key {unknown[0]!r} (known: seed, count, first, why)")
        entries.append(PlanEntry(_int(item.get("seed"), f"{where} entry {i} 'seed'", 0),
                                 _int(item.get("count"), f"{where} entry {i} 'count'", 1),
                                 _int(item.get("first", 0), f"{where} entry {i} 'first'", 0)))
    total = sum(e.count for e in entries)
    if total > MAX_IMAGES:
        raise ValueError(f"{where} asks for {total} images; a dataset holds at most {MAX_IMAGES}")
    seen: set[tuple[int, int]] = set()
    for pair in expand_plan(entries):
        if pair in seen:
            raise ValueError(f"{where} asks for variant {pair[1]} of seed {pair[0]} twice")
        seen.add(pair)
    return entries


def read_plan(path: str | Path) -> list[PlanEntry]:
    return parse_plan(read_json(Path(path), "variant plan"), f"plan {path}")


def write_plan(path: str | Path, entries: Sequence[PlanEntry | dict[str, Any]]) -> Path:
    """Write a plan atomically (entries may carry a ``why`` note; the generator ignores it)."""
    items = [e.to_dict() if isinstance(e, PlanEntry) else dict(e) for e in entries]
    parse_plan(items)
    return atomic_write_json(Path(path), items, indent=1)


def expand_plan(entries: Sequence[PlanEntry]) -> list[tuple[int, int]]:
    """Image index -> (parent seed, variant number), in plan order."""
    return [(e.seed, e.first + k) for e in entries for k in range(e.count)]

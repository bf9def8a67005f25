"""blender_instseg: synthetic instance-segmentation data, a bundled model, and predictions in Blender.

The package has three layers (see docs/architecture.md):

- ``core``: no bpy, no torch. COCO encoding, dataset I/O, validation, metrics, the JSON-lines protocol.
- ``ml``: torch, no bpy. Runs as its own process (``python -m blender_instseg.ml``).
- ``blender``: bpy, no torch. Scene generation, rendering, operators, panel, preferences.

This file is also the Blender extension's entry point. ``register``/``unregister`` import the
Blender layer lazily so that ``import blender_instseg.core`` never needs bpy.
"""

__version__ = "0.1.0"


def register() -> None:
    from . import blender

    blender.register()


def unregister() -> None:
    from . import blender

    blender.unregister()

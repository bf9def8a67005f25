"""The model layer: torch, never bpy. Runs as its own process: ``python -m blender_instseg.ml``."""

"""Load Config / Save Config / Reset Config: the Dataset section's settings to and from a config file.

Load reads a TOML or JSON generator config, or a dataset's config.json (its ``generator`` section),
through ``core.genconfig.load_config``, so a bad file gets the same one-line message as the
generator gives, and nothing in the panel changes. The file becomes the Base Config: what only a
config file sets (shapes, categories, per-category settings, light types) keeps coming from it.
Save writes the config the panel describes (``dataset.panel_config``) as TOML or JSON by suffix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.props import StringProperty

from .. import OperatorReturn
from ...core.genconfig import load_config
from ...core.genconfig_write import write_config
from .. import config_props, wording
from ..props import job_state, settings
from .dataset import apply_config, panel_config


def _fail(op: Any, context: Any, message: str) -> set[OperatorReturn]:
    """One line in the panel (the Dataset section's error box) and in the status bar."""
    state = job_state(context)
    state.kind, state.running, state.summary = "generate", False, ""
    state.last_error = message
    op.report({"ERROR"}, message)
    return {"CANCELLED"}


def _done(op: Any, context: Any, message: str) -> set[OperatorReturn]:
    state = job_state(context)
    if not state.running:
        state.kind, state.last_error, state.summary = "generate", "", message
    op.report({"INFO"}, message)
    return {"FINISHED"}


class INSTSEG_OT_load_config(bpy.types.Operator):
    """Set the Dataset settings from a generator config (.toml/.json) or a dataset's config.json"""

    bl_idname = "instseg.load_config"
    bl_label = "Load Config"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    filter_glob: StringProperty(default="*.toml;*.json", options={"HIDDEN"})  # type: ignore[valid-type]

    def invoke(self, context: Any, event: Any) -> set[OperatorReturn]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: Any) -> set[OperatorReturn]:
        path = Path(bpy.path.abspath(self.filepath)) if self.filepath else None
        if path is None:
            return _fail(self, context, "Load Config: choose a .toml or .json file")
        try:
            cfg = load_config(path)
        except ValueError as exc:
            return _fail(self, context, f"Load Config: {exc}")
        apply_config(context, cfg)
        settings(context).config_file = str(path)
        only = [f"{section}.{name}" for section in config_props.SECTIONS for name in config_props.config_only(section)]
        return _done(self, context, f"loaded {path.name} (also the Base Config for {len(only) + 1} config-file-only keys)")


class INSTSEG_OT_save_config(bpy.types.Operator):
    """Save the Dataset settings as a generator config: .toml, or .json for any other name"""

    bl_idname = "instseg.save_config"
    bl_label = "Save Config"

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    filter_glob: StringProperty(default="*.toml;*.json", options={"HIDDEN"})  # type: ignore[valid-type]

    def invoke(self, context: Any, event: Any) -> set[OperatorReturn]:
        if not self.filepath:
            self.filepath = "instseg_generator.toml"
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: Any) -> set[OperatorReturn]:
        if not self.filepath:
            return _fail(self, context, "Save Config: choose a file name (.toml or .json)")
        path = Path(bpy.path.abspath(self.filepath))
        try:
            cfg = panel_config(context, sources=True)
            write_config(cfg, path)
        except ValueError as exc:
            return _fail(self, context, f"Save Config: {wording.ui_message('generate', str(exc))}")
        except OSError as exc:
            return _fail(self, context, f"Save Config: cannot write {path}: {exc.strerror or exc}")
        note = " (This File's Collections is not part of a config: --blend FILE)" \
            if settings(context).object_source == "COLLECTIONS" else ""
        return _done(self, context, f"saved {path}{note}")


class INSTSEG_OT_reset_config(bpy.types.Operator):
    """Set the generator's config sections back to their defaults and drop the Base Config"""

    bl_idname = "instseg.reset_config"
    bl_label = "Reset Config"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: Any) -> set[OperatorReturn]:
        s = settings(context)
        config_props.reset(s.generator)
        s.config_file = ""
        return _done(self, context, "generator config sections reset to the defaults")


classes = (INSTSEG_OT_load_config, INSTSEG_OT_save_config, INSTSEG_OT_reset_config)

"""Operators: generate, preview labels and browse a dataset, load/save the generator config, annotate this
scene, train, mine hard scenes, evaluate, predict view (one frame or a range), cancel, overlays and selection.

Registered through the framework in ``blender/__init__.py`` (it reads ``classes`` and calls
``unregister``); unregistering also stops a running child so no process outlives the add-on.
"""

from __future__ import annotations

from . import annotate, config, dataset, evaluate, jobs, mine, misc, predict, predict_frames, preview, train

classes = (*dataset.classes, *preview.classes, *config.classes, *annotate.classes, *train.classes, *mine.classes,
           *evaluate.classes, *predict.classes, *predict_frames.classes, *misc.classes)


def unregister() -> None:
    jobs.shutdown()

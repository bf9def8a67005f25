"""What every long-running operator shares: which Python to use, blocking vs timer path, errors."""

from __future__ import annotations

from typing import Any

import bpy
from .. import OperatorReturn
from bpy.props import BoolProperty, StringProperty

from ..props import job_state
from . import jobs


def python_for(op: Any, context: Any) -> str:
    """The interpreter for out-of-process model work: the operator override, else the preference."""
    override = getattr(op, "python", "")
    if override:
        return override
    from ..preferences import resolve_python

    return resolve_python(context)


class JobOperatorMixin:
    """``execute`` blocks in background mode (timers never fire there) and uses a timer in the UI."""

    python: StringProperty(  # type: ignore[valid-type]
        name="Python", default="", options={"HIDDEN", "SKIP_SAVE"},
        description="Interpreter for the model process; empty = the add-on preference")
    blocking: BoolProperty(  # type: ignore[valid-type]
        name="Blocking", default=False, options={"HIDDEN", "SKIP_SAVE"},
        description="Wait for the child to finish (always on in background mode)")

    @classmethod
    def poll(cls, context: Any) -> bool:
        return not jobs.is_running()

    def build_spec(self, context: Any) -> jobs.JobSpec:  # pragma: no cover - overridden
        raise NotImplementedError

    def fail(self, context: Any, message: str) -> set[OperatorReturn]:
        job_state(context).last_error = message
        self.report({"ERROR"}, message)  # type: ignore[attr-defined]
        return {"CANCELLED"}

    def execute(self, context: Any) -> set[OperatorReturn]:
        try:
            spec = self.build_spec(context)
        except (ValueError, OSError) as exc:
            return self.fail(context, str(exc))
        if self.blocking or (bpy.app.background and not jobs.ASYNC_IN_BACKGROUND):
            ok, message = jobs.run_now(context, spec)
        else:
            ok, message = jobs.start(context, spec)
        if not ok:
            return self.fail(context, message)
        self.report({"INFO"}, message)  # type: ignore[attr-defined]
        return {"FINISHED"}

"""Cancel the running child."""

from __future__ import annotations

from typing import Any

import bpy

from .. import OperatorReturn
from . import jobs


class INSTSEG_OT_cancel_job(bpy.types.Operator):
    """Stop the running generator/trainer/predictor (the trainer saves a checkpoint first)"""

    bl_idname = "instseg.cancel_job"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return jobs.is_running()

    def execute(self, context: Any) -> set[OperatorReturn]:
        if not jobs.request_cancel(context):
            self.report({"WARNING"}, "nothing is running")
            return {"CANCELLED"}
        self.report({"INFO"}, "stopping...")
        return {"FINISHED"}


classes = (INSTSEG_OT_cancel_job,)

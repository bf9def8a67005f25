"""Child processes: start, stream and stop them, keep a model server warm, build their command lines.

NO bpy, NO torch: the Blender operators, the pipeline's stages and the generator's worker pool all
use this package, and it runs under any of the project's interpreters. ``child`` starts one child
whose stdout speaks ``core.protocol`` JSON lines (and "stop" on its stdin asks it to stop), ``server``
keeps a serving child alive between requests, ``argv`` builds every child's command line.
"""

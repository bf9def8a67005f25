"""The generator's bpy-free half: its command line, resume checks, progress and worker pool.

NO bpy, NO torch. The Blender side (``blender.generate``: the driver and ``main``;
``blender.render_image``: one image) uses these; they need only ``core`` and ``procs``, so they are
importable and testable in any of the project's interpreters.
"""

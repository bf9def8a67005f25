"""Multi-stage jobs that chain the generator and the model as child processes (no bpy, no torch here).

``stages``  run one child and follow its ``core.protocol`` JSON lines (also used by scripts/demo.py)
``ranking`` score images by error and pick the seeds to mine
``loop``    the hard-scene mining loop (``python -m blender_instseg.pipeline loop --help``)
"""

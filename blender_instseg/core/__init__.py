"""bpy-free, torch-free core: COCO encoding, dataset I/O, validation, metrics, protocol.

Imported by both the Blender process and the model process, so it may depend only on numpy,
pycocotools and opencv (all bundled with the extension) and, for plots, optionally matplotlib.
"""

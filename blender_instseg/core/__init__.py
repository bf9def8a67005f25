"""bpy-free, torch-free core, by concern: ``formats/`` (COCO encoding, the dataset layout and merge,
the optional output formats behind one table), ``evaluation/`` (metrics, Boundary AP, the report),
``validation/`` (the strict dataset checker), and the small shared modules (file I/O, the JSON-lines
protocol, the generator config, variant plans, COCO concatenation, the merge command).

Imported by both the Blender process and the model process, so it may depend only on numpy,
pycocotools and opencv (all bundled with the extension) and, for plots, optionally matplotlib.
"""

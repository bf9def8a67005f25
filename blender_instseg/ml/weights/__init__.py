"""Where the default pretrained weights live (torch-free, so the Blender layer can name the file).

``solov2_object.pt`` ships with the add-on, made by ``benchmarks/pretrain_weights.py``;
``ml/pretrained.py`` loads it. ``BLENDER_INSTSEG_WEIGHTS`` names another file to use instead, e.g.
weights a studio pretrained on its own asset library with the same recipe (``--export``): it must
be class-agnostic too (one category, "object"), as Predict View names every prediction so.
"""

import os
from pathlib import Path

WEIGHTS_ENV = "BLENDER_INSTSEG_WEIGHTS"
SHIPPED = Path(__file__).resolve().parent / "solov2_object.pt"
BUNDLED = Path(os.environ[WEIGHTS_ENV]).resolve() if os.environ.get(WEIGHTS_ENV, "").strip() else SHIPPED
#: the category the bundled weights predict: every object, of any kind
BUNDLED_CATEGORIES = {1: "object"}

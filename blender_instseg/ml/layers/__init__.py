"""Detection layers in pure torch (torchvision is not available): boxes, NMS, anchors, RoIAlign,
mask crops and pasting, object crops. (Not ``ops``: in this project that name means Blender operators.)"""

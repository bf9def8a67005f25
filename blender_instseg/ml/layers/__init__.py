"""Detection ops in pure torch (torchvision is not available): boxes, NMS, anchors, RoIAlign."""

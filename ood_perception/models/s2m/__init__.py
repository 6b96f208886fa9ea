"""S2M (Segment Every Out-of-Distribution Object, CVPR 2024): box prompts from an anomaly score.

The official prompt generator (detectron2's Faster R-CNN R50-FPN run on the score map, under
detectron2's parameter names), the detector-free proposals built from a score's connected
components, and the official rule that merges SAM's masks into one map.
"""

# Model name of the detector graph (`export --model`); torch-free, for the CLI's flag checks.
DETECTOR_MODEL = "s2m-detector"
# Refinement modes of a frame's mask ("none": the thresholded score is the mask).
REFINE_MODES = ("none", "s2m")

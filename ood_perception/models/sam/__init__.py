"""Segment Anything (SAM) as small modules under segment-anything's parameter names.

`image_encoder` (ViT-B/L/H, or MobileSAM's TinyViT), `prompt_encoder` (box prompts) and
`mask_decoder` (single-mask output), their checkpoint loaders, builders and deploy wrappers.
"""

# Model names of the SAM variants (`export --model`); torch-free, for the CLI's flag checks.
MODEL_NAMES = ("sam-vit-b", "sam-vit-l", "sam-vit-h", "mobile-sam")

"""Display helpers for single images on the Softened outputs and Classify pages (no Streamlit)."""

from __future__ import annotations

from PIL import Image


def enlarge(image: Image.Image, side: int = 160) -> Image.Image:
    """A 32x32 view blown up with square pixels, so it is seen as the model sees it."""
    return image.resize((side, side), Image.Resampling.NEAREST)

"""Display helpers for single images on the Softened outputs and Classify pages (no Streamlit)."""

from __future__ import annotations

from PIL import Image


def enlarge(image: Image.Image, side: int = 160) -> Image.Image:
    """A 32x32 view blown up with square pixels, so it is seen as the model sees it."""
    return image.resize((side, side), Image.Resampling.NEAREST)


SOFTENED_PAGE = "pages/softened_outputs.py"


def softened_outputs_link(
    teacher: str, student: str, class_name: str, number: int, temperature: float | None = None
) -> dict[str, str]:
    """The URL settings that open the Softened outputs page on one test image (`number` within
    its class, from 0) with this teacher and student, named by their run titles as its pickers
    show them; at `temperature` if given (else the page's own)."""
    settings = {
        "softened.teacher": teacher,
        "softened.student": student,
        "softened.source": "test image",
        "softened.class": class_name,
        "softened.index": str(number),
    }
    if temperature is not None:
        settings["softened.temperature"] = f"{temperature:g}"
    return settings

"""Decoding untrusted uploads, the model view, and predictions at temperature T."""

import io
import math
import random
import struct
import time
import zlib

import pytest
import torch
from PIL import Image

from kdcore.inference import (
    ACCEPTED_EXTENSIONS,
    ACCEPTED_FORMATS,
    MAX_SIDE,
    ImageDecodeError,
    decode_image,
    entropy,
    image_to_tensor,
    kl_divergence,
    predict,
    softened_probabilities,
    temperature_sweep,
    to_model_view,
    top_k,
)
from kdcore.losses import soft_targets


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def noise_image(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    return Image.frombytes(
        "RGB", (width, height), random.Random(seed).randbytes(width * height * 3)
    )


def png_declaring_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR is rewritten to claim width x height (CRC fixed)."""
    data = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)  # IHDR data starts after sig+len+type
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def assert_close(pixel, expected, tolerance=0):
    assert all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True)), pixel


@pytest.mark.parametrize(
    ("image_format", "tolerance"), [("PNG", 0), ("JPEG", 6), ("WEBP", 6), ("BMP", 0)]
)
def test_every_accepted_format_round_trips(image_format, tolerance):
    data = encode(Image.new("RGB", (40, 30), (100, 150, 200)), image_format)
    image = decode_image(data)
    assert image.mode == "RGB" and image.size == (40, 30)
    assert_close(image.getpixel((20, 15)), (100, 150, 200), tolerance)


def test_accepted_extensions_map_to_accepted_formats():
    extensions = Image.registered_extensions()
    assert {extensions[f".{ext}"] for ext in ACCEPTED_EXTENSIONS} == set(ACCEPTED_FORMATS)


def test_empty_bytes_are_refused():
    with pytest.raises(ImageDecodeError, match="cat.png is empty"):
        decode_image(b"", name="cat.png")


def test_random_bytes_are_not_an_image():
    with pytest.raises(ImageDecodeError, match="not an image Pillow can read"):
        decode_image(random.Random(1).randbytes(2000), name="x.png")


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_truncated_file_is_refused(image_format):
    data = encode(noise_image(), image_format)
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("side", [20_000, 8_000])  # Pillow's own bomb check; then ours
def test_decompression_bomb_is_refused_before_decoding(side):
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(png_declaring_size(side, side))
    assert time.perf_counter() - start < 0.5


def test_pixel_limit_is_configurable():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageDecodeError, match=r"\(0\.01 megapixels; limit 0\.005\)"):
        decode_image(data, max_pixels=5_000)


@pytest.mark.parametrize("image_format", ["GIF", "TIFF"])
def test_other_formats_are_refused_by_name(image_format):
    data = encode(Image.new("RGB", (8, 8)), image_format)
    with pytest.raises(ImageDecodeError, match=f"format {image_format}.*not accepted"):
        decode_image(data)


def test_grayscale_and_bilevel_become_rgb():
    assert decode_image(encode(Image.new("L", (4, 4), 77), "PNG")).getpixel((0, 0)) == (77,) * 3
    white = decode_image(encode(Image.new("1", (4, 4), 1), "PNG"))
    assert white.getpixel((0, 0)) == (255, 255, 255)


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (10, 20, 30, 255))
    image = decode_image(encode(rgba, "PNG"))
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 0)) == (10, 20, 30)
    gray_alpha = decode_image(encode(Image.new("LA", (2, 2), (0, 0)), "PNG"))
    assert gray_alpha.getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency_composites_over_white():
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    image = decode_image(encode(palette, "PNG", transparency=0))
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 0)) == (255, 0, 0)


def test_cmyk_jpeg_becomes_rgb():
    image = decode_image(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"))
    assert image.mode == "RGB"
    assert_close(image.getpixel((8, 8)), (255, 0, 0), tolerance=12)


def test_sixteen_bit_png_is_scaled_not_clipped():
    deep = Image.new("I;16", (3, 1))
    for x, value in enumerate((65535, 32768, 0)):
        deep.putpixel((x, 0), value)
    image = decode_image(encode(deep, "PNG"))
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert_close(image.getpixel((1, 0)), (128, 128, 128), tolerance=1)
    assert image.getpixel((2, 0)) == (0, 0, 0)


def test_float_image_is_scaled_to_8_bit():
    from kdcore.inference import _to_rgb

    image = Image.new("F", (2, 1), 0.0)
    image.putpixel((1, 0), 1.0)
    rgb = _to_rgb(image, "f")
    assert rgb.getpixel((0, 0)) == (0, 0, 0) and rgb.getpixel((1, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (2, 1))
    image.putpixel((0, 0), (255, 0, 0))
    image.putpixel((1, 0), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    upright = decode_image(encode(image, "PNG", exif=exif))
    assert upright.size == (1, 2)
    assert upright.getpixel((0, 0)) == (255, 0, 0)
    assert upright.getpixel((0, 1)) == (0, 0, 255)


def test_big_jpeg_is_reduced():
    data = encode(Image.new("RGB", (6000, 4000), (30, 60, 90)), "JPEG")
    image = decode_image(data)
    assert max(image.size) <= MAX_SIDE and image.size == (1024, 683)
    assert_close(image.getpixel((500, 300)), (30, 60, 90), tolerance=6)


def test_big_png_is_reduced():
    image = decode_image(encode(Image.new("RGB", (3000, 500)), "PNG"))
    assert image.size == (1024, 171)


def test_model_view_and_tensor():
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    view = to_model_view(image)
    assert view.mode == "RGB" and view.size == (32, 32)
    tensor = image_to_tensor(view)
    assert tensor.dtype == torch.uint8 and tensor.shape == (3, 32, 32)
    assert tensor[0].eq(255).all() and tensor[1:].eq(0).all()


def test_tensor_keeps_pixel_positions():
    image = Image.new("RGB", (3, 2))
    image.putpixel((2, 1), (1, 2, 3))
    assert image_to_tensor(image)[:, 1, 2].tolist() == [1, 2, 3]


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))


def test_predict_returns_probability_rows():
    model = tiny_model().train()
    batch = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    probs = predict(model, batch, temperature=2.0)
    assert probs.shape == (4, 10) and probs.dtype == torch.float32 and probs.device.type == "cpu"
    assert torch.allclose(probs.sum(dim=1), torch.ones(4))
    assert predict(model, batch[0]).shape == (1, 10)
    assert model.training  # the caller's mode is restored


def test_predict_refuses_bad_input():
    model = tiny_model()
    with pytest.raises(TypeError, match="uint8"):
        predict(model, torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="Temperature"):
        predict(model, torch.zeros(3, 32, 32, dtype=torch.uint8), temperature=0)


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan")])
def test_non_positive_temperature_is_refused(temperature):
    with pytest.raises(ValueError, match="Temperature T must be greater than 0"):
        softened_probabilities(torch.zeros(3), temperature)


@pytest.mark.parametrize("temperature", [0.25, 1, 4.0, 1e6, math.inf])
def test_softened_probabilities_agree_with_soft_targets(temperature):
    logits = torch.tensor([[4.0, 1.0, 0.0, -2.0], [0.5, -7.0, 3.0, 3.0]])
    torch.testing.assert_close(
        softened_probabilities(logits, temperature), soft_targets(logits, temperature)
    )


def test_infinite_temperature_is_uniform():
    probs = softened_probabilities(torch.tensor([4.0, 1.0, 0.0, -2.0]), math.inf)
    torch.testing.assert_close(probs, torch.full((4,), 0.25))


def test_higher_temperature_flattens_distribution():
    logits = torch.tensor([4.0, 1.0, 0.0, -2.0])
    entropies = [float(entropy(softened_probabilities(logits, t))) for t in (0.5, 1, 2, 4, 50)]
    assert entropies == sorted(entropies) and len(set(entropies)) == 5
    assert entropies[-1] == pytest.approx(math.log(4), abs=0.01)


def test_kl_divergence_zero_for_identical_positive_otherwise():
    p = torch.tensor([0.7, 0.2, 0.1, 0.0])
    assert float(kl_divergence(p, p)) == 0.0
    q = torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert float(kl_divergence(p, q)) > 0
    assert math.isfinite(float(kl_divergence(q, p)))  # student zero stays finite
    assert kl_divergence(torch.stack([p, q]), torch.stack([p, p])).shape == (2,)


def test_top_k_is_sorted_and_named():
    probs = torch.tensor([0.1, 0.6, 0.3])
    assert top_k(probs, ["a", "b", "c"], k=2) == [
        ("b", pytest.approx(0.6)),
        ("c", pytest.approx(0.3)),
    ]
    assert len(top_k(probs, ["a", "b", "c"], k=10)) == 3
    with pytest.raises(ValueError):
        top_k(probs, ["a", "b"])


def test_temperature_sweep_columns():
    teacher = torch.tensor([3.0, 1.0, 0.0])
    student = torch.tensor([0.0, 2.0, 1.0])
    sweep = temperature_sweep(teacher, student, [1.0, 4.0, 100.0])
    assert set(sweep) == {"temperature", "teacher_entropy", "student_entropy", "kl"}
    assert all(len(column) == 3 for column in sweep.values())
    assert sweep["teacher_entropy"][0] < sweep["teacher_entropy"][-1]
    assert sweep["kl"][-1] < sweep["kl"][0]


# --- test images worth a look (kdcore.examples) ----------------------------------------------


def one_hot_logits(guesses: list[int], classes: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(guesses), classes).float() * 5


def test_example_masks_pick_where_each_model_is_right_or_wrong():
    from kdcore.examples import ANY_IMAGE, example_masks

    labels = torch.tensor([0, 1, 2, 0, 1])
    logits = {
        "teacher": one_hot_logits([0, 1, 0, 1, 1]),
        "student": one_hot_logits([0, 2, 0, 2, 0]),
    }
    masks = {kind: mask.tolist() for kind, mask in example_masks(labels, logits).items()}
    assert masks == {
        ANY_IMAGE: [True] * 5,
        "the teacher right, the student wrong": [False, True, False, False, True],
        "the student right, the teacher wrong": [False] * 5,
        "the two disagree": [False, True, False, True, True],
        "both wrong": [False, False, True, True, False],
    }
    alone = example_masks(labels, {"student": logits["student"]})
    assert alone["the student wrong"].tolist() == [False, True, True, True, True]
    assert alone["the student right"].tolist() == [True, False, False, False, False]
    with pytest.raises(ValueError, match="one model or two"):
        example_masks(
            labels, {"a": logits["teacher"], "b": logits["teacher"], "c": logits["teacher"]}
        )


def test_examples_are_drawn_from_the_mask_the_same_way_for_the_same_draw():
    from kdcore.examples import draw_examples

    mask = torch.arange(100) % 3 == 0
    first = draw_examples(mask, 5, draw=0)
    assert len(first) == 5 and mask[first].all() and first.tolist() == sorted(set(first.tolist()))
    assert torch.equal(first, draw_examples(mask, 5, draw=0))
    assert not torch.equal(first, draw_examples(mask, 5, draw=1))
    assert draw_examples(mask, 50).tolist() == list(range(0, 100, 3))  # fewer match: all of them
    assert len(draw_examples(torch.zeros(10, dtype=torch.bool), 4)) == 0
    with pytest.raises(ValueError, match="at least one"):
        draw_examples(mask, 0)


def test_the_example_pool_is_fixed_and_each_example_carries_its_true_class():
    from kdcore.data import ImageSet
    from kdcore.examples import classified_examples, example_pool

    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    test = ImageSet(images, torch.arange(50) % 3, ("cat", "dog", "ship"))
    pool = example_pool(test, size=20)
    assert len(pool) == 20 and torch.equal(pool.images, example_pool(test, size=20).images)
    assert example_pool(test, size=80) is test
    logits = {"teacher": one_hot_logits(((pool.labels + 1) % 3).tolist())}  # always wrong
    [result] = classified_examples(pool, [4], logits, k=2)
    assert result.truth == ("cat", "dog", "ship")[int(pool.labels[4])]
    assert result.name == "test image 5 of 20" and result.view.size == (32, 32)
    assert result.view.tobytes() == pool.images[4].permute(1, 2, 0).numpy().tobytes()
    [(guess, probability), _] = result.top["teacher"]
    assert guess != result.truth and probability > 0.9


def test_each_pool_image_is_found_again_in_the_split_by_its_class_and_number():
    from kdcore.data import ImageSet
    from kdcore.examples import example_indices, example_pool, place_in_class

    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    test = ImageSet(images, torch.randint(0, 3, (50,), generator=torch.Generator().manual_seed(1)),
                    ("cat", "dog", "ship"))  # fmt: skip
    pool, where = example_pool(test, size=20), example_indices(test, size=20)
    assert torch.equal(test.images[where], pool.images) and where.tolist() == sorted(where.tolist())
    assert example_indices(test, size=80).tolist() == list(range(50))  # the pool is the split
    for index in where.tolist():  # as the Softened outputs page finds an image: class, number
        same_class = torch.nonzero(test.labels == test.labels[index]).flatten()
        assert int(same_class[place_in_class(test.labels, index)]) == index
    assert [place_in_class(torch.tensor([2, 0, 2, 2, 0]), i) for i in range(5)] == [0, 0, 1, 2, 1]


def test_the_loss_terms_sweep_weighs_the_studys_terms_by_alpha_at_each_temperature():
    from kdcore.inference import loss_terms_sweep
    from kdcore.losses import distillation_terms

    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 64, 10, generator=generator)  # logits (64, 10) each
    labels = torch.randint(0, 10, (64,), generator=generator)
    sweep = loss_terms_sweep(student, teacher, labels, [1.0, 4.0], alpha=0.3)
    for i, temperature in enumerate([1.0, 4.0]):
        terms = distillation_terms(student, teacher, labels, temperature, 0.3)
        assert sweep["soft"][i] == pytest.approx(0.3 * float(terms["soft"]))
        assert sweep["hard"][i] == pytest.approx(0.7 * float(terms["hard"]))
        assert sweep["loss"][i] == pytest.approx(float(terms["loss"]))
        assert sweep["soft_share"][i] == pytest.approx(sweep["soft"][i] / sweep["loss"][i])
    assert sweep["temperature"] == [1.0, 4.0] and sweep["hard"][0] == sweep["hard"][1]
    assert loss_terms_sweep(student, teacher, labels, [2.0], alpha=0.0)["soft_share"] == [0.0]
    assert loss_terms_sweep(student, teacher, labels, [2.0], alpha=1.0)["soft_share"] == [1.0]
    same = loss_terms_sweep(student, student, labels, [2.0], alpha=1.0)  # nothing to learn
    assert same["loss"] == [pytest.approx(0.0, abs=1e-6)] and same["soft_share"][0] <= 1.0

import resource
import struct
import zlib

import numpy as np
import pytest

from inspector.cv_setup import cv2
from inspector.formats import decode, decode_frame, list_images
from inspector.preprocess import Exposure, ImageError, preprocess
from inspector.settings import PreprocessConfig
from conftest import SAMPLE

UNIT = PreprocessConfig(size=200, normalize="unit")


def _gradient(height=240, width=320) -> np.ndarray:
    """A grey test picture: a horizontal ramp with a dark square, 8-bit."""
    image = np.tile(np.linspace(20, 235, width), (height, 1)).astype(np.uint8)
    image[60:120, 80:160] = 10
    return image


def _write(path, image, params=()):
    assert cv2.imwrite(str(path), image, list(params)), f"could not write {path}"
    return path


FORMATS = {
    "png8_gray": ("a.png", lambda g: g),
    "png16_gray": ("a.png", lambda g: g.astype(np.uint16) * 257),
    "png_rgb": ("a.png", lambda g: cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)),
    "png_rgba": ("a.png", lambda g: cv2.cvtColor(g, cv2.COLOR_GRAY2BGRA)),
    "jpeg_gray": ("a.jpg", lambda g: g),
    "jpeg_rgb": ("a.jpeg", lambda g: cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)),
    "bmp_rgb": ("a.bmp", lambda g: cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)),
    "tiff8": ("a.tif", lambda g: g),
    "tiff16_rgb": ("a.tiff", lambda g: cv2.cvtColor(g.astype(np.uint16) * 257, cv2.COLOR_GRAY2BGR)),
}


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_gives_the_same_normalized_array(tmp_path, kind):
    name, convert = FORMATS[kind]
    gray = _gradient()
    reference = cv2.resize(gray.astype(np.float32) / 255, (200, 200), interpolation=cv2.INTER_AREA)
    out = preprocess(_write(tmp_path / name, convert(gray)), UNIT)
    assert out.shape == (200, 200) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    tolerance = 0.03 if name.endswith((".jpg", ".jpeg")) else 0.005  # JPEG is lossy
    assert np.abs(out - reference).mean() < tolerance


@pytest.mark.parametrize("kind, dtype", [("png8_gray", np.uint8), ("png16_gray", np.uint16), ("png_rgb", np.uint8)])
def test_frames_keep_their_pixel_type_and_decode_scales_them_to_unit(tmp_path, kind, dtype):
    name, convert = FORMATS[kind]
    data = _write(tmp_path / name, convert(_gradient())).read_bytes()
    frame = decode_frame(data)
    assert frame.dtype == dtype and frame.shape == (240, 320)
    unit = decode(data)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, frame / np.iinfo(dtype).max, atol=1e-6)


def test_a_float_frame_with_nan_is_refused(tmp_path):
    image = np.full((32, 32), 0.5, np.float32)
    image[3, 4] = np.nan
    data = _write(tmp_path / "a.tif", image).read_bytes()
    with pytest.raises(ImageError, match="non-finite pixel values"):
        decode_frame(data)


def test_bytes_and_path_give_the_same_array(tmp_path):
    path = _write(tmp_path / "a.png", _gradient())
    assert np.array_equal(preprocess(path, UNIT), preprocess(path.read_bytes(), UNIT))


def test_standardize_cancels_gain_and_offset(tmp_path):
    config = PreprocessConfig(size=64, normalize="standardize")
    path = _write(tmp_path / "a.png", _gradient())
    plain = preprocess(path, config)
    lit = preprocess(path, config, Exposure(gain=1.1, offset=-12))
    assert abs(float(plain.mean()) - 0.5) < 0.02
    assert np.abs(plain - lit).max() < 0.01


def test_unit_normalization_follows_exposure(tmp_path):
    path = _write(tmp_path / "a.png", _gradient())
    darker = preprocess(path, UNIT, Exposure(gain=0.8))
    assert preprocess(path, UNIT).mean() - darker.mean() > 0.05


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.png", b"", "empty file"),
        ("notes.png", b"this is a shift report, not a picture\n" * 20, "not a readable image"),
    ],
)
def test_broken_files_raise_image_error(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError) as info:
        preprocess(path, UNIT)
    assert reason in info.value.reason
    assert str(path) in str(info.value)


def test_truncated_png_is_refused(tmp_path):
    good = _write(tmp_path / "good.png", _gradient())
    data = good.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        preprocess(cut, UNIT)
    assert "not a readable image" in info.value.reason


def huge_png(width: int, height: int) -> bytes:
    """A tiny file whose header declares a gigantic 8-bit grey image."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def test_huge_dimension_png_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(huge_png(50_000, 50_000))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ImageError) as info:
        preprocess(path, UNIT)
    assert "too large" in info.value.reason and "50000x50000" in info.value.reason
    # Refused from the header: the 2.5 GB pixel buffer was never allocated.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 500_000


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError) as info:
        preprocess(tmp_path / "nope.png", UNIT)
    assert "cannot read file" in info.value.reason


def test_list_images_skips_hidden_and_other_files(tmp_path):
    for name in ["b.png", "a.JPG", ".hidden.png", "notes.txt", "c.tiff"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "c.tiff"]


def test_a_crop_cut_from_the_region_under_it_is_the_crop_cut_from_the_whole_frame():
    """Only the frame's region under the crop is shrunk before it is turned: the crop is the one
    the whole frame, shrunk, gives (up to where the shrinking's pixel grid starts); one frame
    pixel off would differ ten times as much."""
    from inspector.preprocess import prepare_frame, read_frame

    plain = PreprocessConfig(pose="axis", normalize="unit")
    for path in sorted((SAMPLE / "train" / "good").glob("*.png"))[:4]:
        frame = read_frame(path)
        prepared = prepare_frame(frame, plain)
        crop = prepared.array.reshape(prepared.array.shape[:2])
        scale = float(np.hypot(*prepared.matrix[:, 0]))
        matrix = prepared.matrix.copy()
        matrix[:, :2] /= scale  # from the shrunk frame's pixels
        whole = cv2.warpAffine(cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), matrix,
                               crop.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        difference = np.abs(crop - whole)
        assert difference.mean() < 0.003 and difference.max() < 0.08, path.name


@pytest.mark.parametrize("shape", [(256, 256), (192, 256), (201, 255), (257, 257)])
def test_the_light_blurred_on_a_smaller_copy_is_the_full_size_blur_for_any_frame_size(shape):
    from inspector.lighting import LIGHT_KERNEL_SHARE, background_light

    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frame = (0.4 + 0.5 * x / w + 0.1 * np.sin(y / 20)).astype(np.float32)  # light falling across
    frame[h // 3:h // 2, w // 3:2 * w // 3] = 0.1  # a dark part, closed away
    side = int(LIGHT_KERNEL_SHARE * max(shape)) | 1
    closed = cv2.morphologyEx(frame, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (side, side)),
                              borderType=cv2.BORDER_REPLICATE)
    full = cv2.GaussianBlur(closed, (0, 0), side / 4)
    relative = np.abs(background_light(frame) / full - 1)
    assert relative.mean() < 5e-4 and relative.max() < 6e-3


@pytest.mark.parametrize("shape, scale", [((1024, 1024), 0.25), ((512, 768), 0.125), ((1000, 600), 0.5),
                                          ((1022, 1024), 0.25), ((1024, 1024), 0.3), ((1024, 1024), 0.249)])
def test_a_frame_shrunk_in_halvings_is_the_frame_shrunk_at_once(shape, scale):
    """Shrinking by a power of two goes in halvings where the sides allow: the pixels of one
    area shrink, to float rounding (a halving that dropped a row or averaged 3x3 would differ by
    a tenth of the grey range on this noise)."""
    from inspector.preprocess import shrink

    frame = np.random.default_rng(7).random(shape, dtype=np.float32)
    at_once = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    shrunk = shrink(frame, scale)
    assert shrunk.shape == at_once.shape
    assert np.abs(shrunk - at_once).max() < 1e-6
    eight_bit = (frame * 255).astype(np.uint8)  # integer pixels: one shrink, rounded once
    assert np.array_equal(shrink(eight_bit, scale),
                          cv2.resize(eight_bit, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("scale", [0.0, -0.5, 1.0, 2.0])
def test_shrink_refuses_a_scale_that_does_not_shrink(scale):
    from inspector.preprocess import shrink

    with pytest.raises(ValueError, match="between 0 and 1"):
        shrink(np.zeros((64, 64), np.float32), scale)

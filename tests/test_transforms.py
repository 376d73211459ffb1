"""SiamFC crop geometry, crop-and-resize, augmentations, labels and the training transform."""
import base64
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import OFFICIAL as FIXTURES
from lorat import boxes as bx
from lorat.data import transforms as T


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------ crop parameters
def test_area_factor_rule_non_square_and_square():
    box = np.array([100.0, 50.0, 140.0, 60.0])  # w=40, h=10
    s = T.siamfc_scale(box, 4.0, 224)
    assert s[0] == s[1]
    side = 224 / s[0]  # side of the (square-equivalent) source region
    p = 3.0 * (40 + 10) / 2
    assert side == pytest.approx(math.sqrt((40 + p) * (10 + p)))
    assert abs(side - 4.0 * math.sqrt(40 * 10)) > 15  # not OSTrack's f * sqrt(w h)
    sq = np.array([0.0, 0.0, 30.0, 30.0])
    assert 112 / T.siamfc_scale(sq, 2.0, 112)[0] == pytest.approx(60.0)  # square: f * w
    # non-square output sizes use the output area
    assert T.siamfc_scale(sq, 2.0, (120, 60))[0] == pytest.approx(math.sqrt(120 * 60) / 60)


def test_crop_params_centre_the_box():
    box = np.array([37.5, 20.25, 81.0, 99.0])
    s, t = T.siamfc_crop_params(box, 2.0, (112, 96))
    np.testing.assert_allclose(bx.box_center(bx.scale_and_translate(box, s, t)), [56, 48])


def test_jitter_stays_within_theoretical_bounds():
    box = np.array([50.0, 60.0, 130.0, 100.0])
    base = T.siamfc_scale(box, 4.0, 224)
    rng = np.random.default_rng(1)
    log_ratio, shift_frac = [], []
    for _ in range(3000):
        s, t = T.jittered_crop_params(box, 4.0, 224, 0.25, 3.0, rng)
        log_ratio.append(np.log(base / s))
        centred = 112.0 - bx.box_center(box) * s
        max_shift = 0.5 * 3.0 * (80 * s[0] + 40 * s[1])
        shift_frac.append((t - centred) / max_shift)
    log_ratio, shift_frac = np.array(log_ratio), np.array(shift_frac)
    # s / exp(N(0, 1) * 0.25), independent per axis
    assert np.std(log_ratio[:, 0]) == pytest.approx(0.25, rel=0.08)
    assert np.std(log_ratio[:, 1]) == pytest.approx(0.25, rel=0.08)
    assert abs(np.corrcoef(log_ratio.T)[0, 1]) < 0.1
    # translation offset uniform in [-M, M] per axis, M = 1.5 (w s_x + h s_y)
    assert np.abs(shift_frac).max() <= 1.0
    assert np.abs(shift_frac).max() > 0.99
    assert np.mean(np.abs(shift_frac)) == pytest.approx(0.5, abs=0.03)


def test_search_crop_params_validity_and_rejection():
    box = np.array([50.0, 60.0, 130.0, 100.0])
    rng = np.random.default_rng(2)
    for _ in range(200):
        s, t = T.search_crop_params(box, 4.0, 224, rng)
        mapped = bx.scale_and_translate(box, s, t)
        assert bx.intersects_image(mapped, 224, 224)
        assert (bx.box_size(bx.clip_to_image(mapped, 224, 224)) >= 10).all()
    # a 1 x 1000 px box can never reach 10 px in width: rejected after exactly 12 attempts
    thin = np.array([0.0, 0.0, 1.0, 1000.0])
    rng, replay = np.random.default_rng(3), np.random.default_rng(3)
    assert T.search_crop_params(thin, 4.0, 224, rng) is None
    for _ in range(12):
        replay.standard_normal(2)
        replay.uniform(-1, 1, size=2)
    assert rng.random() == replay.random()
    # without jitter the centred parameters come back unchecked
    s, t = T.search_crop_params(thin, 4.0, 224, rng, scale_jitter=0.0, translation_jitter=0.0)
    np.testing.assert_array_equal(s, T.siamfc_scale(thin, 4.0, 224))


# ----------------------------------------------------------------------------- crop and resize
def _reference_crop(image: np.ndarray, s, t, out_w: int, out_h: int, pad: torch.Tensor) -> torch.Tensor:
    """Independent re-derivation: full float CHW image, rectangles in plain Python floats."""
    img = torch.from_numpy(image).permute(2, 0, 1).to(torch.float32)  # the official decoded input
    h, w = image.shape[:2]
    out = pad.view(3, 1, 1).expand(3, out_h, out_w).clone()
    o = [min(max(t[0], 0.0), out_w), min(max(t[1], 0.0), out_h),
         min(max(w * s[0] + t[0], 0.0), out_w), min(max(h * s[1] + t[1], 0.0), out_h)]
    o = [math.floor(o[0]), math.floor(o[1]), math.floor(o[2] + 1 - 1e-4), math.floor(o[3] + 1 - 1e-4)]
    i = [o[0] * (1 / s[0]) + (-t[0] / s[0]), o[1] * (1 / s[1]) + (-t[1] / s[1]),
         o[2] * (1 / s[0]) + (-t[0] / s[0]), o[3] * (1 / s[1]) + (-t[1] / s[1])]
    i = [math.floor(i[0]), math.floor(i[1]), math.floor(i[2] + 1 - 1e-4), math.floor(i[3] + 1 - 1e-4)]
    i = [min(max(i[0], 0), w), min(max(i[1], 0), h), min(max(i[2], 0), w), min(max(i[3], 0), h)]
    out[:, o[1]:o[3], o[0]:o[2]] = F.interpolate(img[None, :, i[1]:i[3], i[0]:i[2]],
                                                 size=(o[3] - o[1], o[2] - o[0]), mode="bilinear",
                                                 align_corners=False)[0]
    return out


@pytest.mark.parametrize("case", range(6))
def test_crop_equals_independent_bilinear_reference(case):
    rng = np.random.default_rng(10 + case)
    h, w = int(rng.integers(40, 120)), int(rng.integers(40, 120))
    image = _image(h, w, case)
    out_w, out_h = [(64, 64), (56, 40), (30, 70)][case % 3]
    s = rng.uniform(0.3, 3.0, 2) if case % 2 else np.repeat(rng.uniform(0.3, 3.0), 2)
    t = np.array([rng.uniform(-0.7 * w * s[0], 0.6 * out_w), rng.uniform(-0.7 * h * s[1], 0.6 * out_h)])
    pad = torch.tensor([10.0, 20.5, 30.25])
    crop, s_act, t_act = T.crop_and_resize(image, s, t, (out_w, out_h), pad_color=pad)
    ref = _reference_crop(image, s, t, out_w, out_h, pad)
    assert crop.shape == (3, out_h, out_w) and crop.dtype == torch.float32
    assert torch.equal(crop, ref)
    # a (3, H, W) float tensor input gives the same bits as the uint8 numpy frame
    crop_t, s_t, t_t = T.crop_and_resize(torch.from_numpy(image).permute(2, 0, 1).float(), s, t,
                                         (out_w, out_h), pad_color=pad)
    assert torch.equal(crop_t, crop)
    np.testing.assert_array_equal(s_t, s_act)
    np.testing.assert_array_equal(t_t, t_act)


def test_integer_crop_is_a_pixel_copy_with_exact_parameters():
    image = _image(80, 100, 4)
    crop, s, t = T.crop_and_resize(image, np.array([1.0, 1.0]), np.array([-10.0, -20.0]), 30)
    assert torch.equal(crop, torch.from_numpy(image[20:50, 10:40]).permute(2, 0, 1).float())
    np.testing.assert_array_equal(s, [1, 1])
    np.testing.assert_array_equal(t, [-10, -20])


def test_actual_parameters_and_padding_at_image_border():
    image = np.random.default_rng(5).integers(0, 51, (80, 100, 3), dtype=np.uint8)  # values <= 50
    box = np.array([2.0, 3.0, 22.0, 18.0])  # near the top-left corner: the crop sticks out
    s_req, t_req = T.siamfc_crop_params(box, 4.0, 64)
    crop, s, t = T.crop_and_resize(image, s_req, t_req, 64, pad_color=torch.tensor([255.0, 255.0, 255.0]))
    # the requested translation is fractional, the actual one is pixel-aligned
    assert not np.allclose(t, t_req) and np.allclose(t, t_req, atol=1.0) and np.allclose(s, s_req, rtol=0.05)
    # with the actual parameters the image rectangle starts exactly on a pixel boundary ...
    img_rect = bx.scale_and_translate(np.array([0.0, 0.0, 100.0, 80.0]), s, t)
    x0, y0 = img_rect[:2]
    assert x0 == pytest.approx(round(x0), abs=1e-4) and y0 == pytest.approx(round(y0), abs=1e-4)
    x0, y0 = int(round(x0)), int(round(y0))
    assert x0 > 0 and y0 > 0
    # ... and the pad colour fills exactly what lies outside the image
    is_pad = (crop == 255.0).all(0)
    inside = torch.zeros(64, 64, dtype=torch.bool)
    inside[y0:, x0:] = True
    assert torch.equal(is_pad, ~inside)
    # default pad colour: the image's own per-channel mean
    crop_default, _, _ = T.crop_and_resize(image, s_req, t_req, 64)
    mean = torch.from_numpy(image.reshape(-1, 3).mean(0)).float()
    torch.testing.assert_close(crop_default[:, 0, 0], mean)


def test_box_round_trip_and_alignment_with_content():
    image = np.zeros((150, 200, 3), dtype=np.uint8)
    image[40:100, 50:90] = 255
    box = np.array([50.0, 40.0, 90.0, 100.0])
    s_req, t_req = np.array([1.37, 0.83]), np.array([13.3, -7.7])
    crop, s, t = T.crop_and_resize(image, s_req, t_req, (160, 120))
    mapped = T.boxes_to_crop(box, s, t)
    np.testing.assert_allclose(T.boxes_from_crop(mapped, s, t), box, atol=1e-9)
    ys, xs = np.nonzero(crop[0].numpy() > 127.5)
    found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)
    np.testing.assert_allclose(found, mapped, atol=1.0)


def test_crop_outside_image_is_all_pad():
    image = _image(20, 20)
    crop, s, t = T.crop_and_resize(image, np.array([1.0, 1.0]), np.array([500.0, 500.0]), 16,
                                   pad_color=np.array([1.0, 2.0, 3.0]))
    assert torch.equal(crop, torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1).expand(3, 16, 16))
    np.testing.assert_array_equal(t, [500, 500])


# ------------------------------------------------------------------------------- augmentations
def _pil_test_image() -> np.ndarray:
    i, j, c = np.meshgrid(np.arange(7), np.arange(9), np.arange(3), indexing="ij")
    return ((i * 37 + j * 101 + c * 59 + (i * j) % 7 * 13) % 256).astype(np.uint8)


# Outputs of Pillow 13.0 (Image.convert("L") and ImageFilter.GaussianBlur) on _pil_test_image(), base64.
_PIL_GRAY = "MJVHX6d2jtZYVao5q2qPTmWKekZ4RGiaZj2fn3i3y3SlMWLRp12bNHJYSYdtzI+9cq5jYaxSW6RmcaxuebSE"
_PIL_BLUR = {
    0.1: "ADt2ZaDbygVAL2qllM8K+TRvXpnUw/45KGOeJWCbl9INCUR/e7bx7ShjX5rV0QxH6CNeWpXQSoXAyQQ/SIO+xwU96yZhaqXg5iR"
         "fEEiDjMcCb6rl+zZxh8L6uPAxRH+6dbDrATx3Mm2ovvk0lM8KLWija6bhBz96Qn242BZRGVSPV5LN8CtmufQvX5rSquUg8jNrm9"
         "MR5iFcMWynfLfyIl2Y3hlUkckH6SRfQXy3mdQP8SxnSYS/odwaVI/K",
    0.7: "H1WHZHqWhkJwZm+GnI5MvGZ7lYOXna5qUYKTPGyJcYVeWWF/gXOgtl56mWyer0V2pltvb4iTYnWkmFJwdGqVpFRytFCBi3ewlUV"
         "8Yl5wf6lDgZWoqmaSi5mzjJxzc36ccXyzRFaOUHeKnrROibhQbYeRcJepXHOBaHSJlEx9SVuTYnuqqGZ6qLtJgKR/nZ1lo29mnZ"
         "BIsk9lX26caZeyWXGfxl1Ho5Q+tmdchHl9naA/vVpmcYCUfrNwXJKo",
    1.3: "SmaFW2WDcmZ/hmp8l218oXB+m3WAiH6AeYaAWWuIZmqFeGmCiWuClWuEmWqEk26ChXp8e4V3bneMdnWKgHGIiXCJjmyMimeMg2m"
         "GfnZ6fYVvgIiHgYSJg36KhXiKhXCLfWiOdWmLdnaAfIN1jpZ2i5B8iIiBhn+AhXSAfGyGcm6McXmLd4GFnZRgl49okolwj4Bwj3"
         "dwhnJ5eXeHcICRb4aTqYtSo4hZnIVimYBjmXplkXdwgX6CcYeSaI6Z",
    2.0: "XGiIZWmFdGqDgmyBi26AjnN/iniAg31/fYF+ZG6Ia2+Gd26Egm6DiW+Ci3KBiHaAgnx+fYB9cHiFdXeFfXSEg3KEh3GEh3GDhHW"
         "CgHp/fX99foF/gH+AhHuBhnaChXOChHODgHWDfXqBe35/jId0jIR3jH95inp8h3d+g3WBfneDenuEeH+EmIholoVsk4Fwj310in"
         "l4hHl+fnqDeH2HdYGKoIZfnYVkmIJok35tjXtzhnt6fnyCd3+Jc4ON",
    5.0: "dnN6d3R6d3V7eHZ8eHh9eHp9eHt+eHx/eXx/eXN5eXR5enV6end7enh8eXp9ent+enx/en1/fHN4fHR4fHV6fHd6fHh8e3p9e3t"
         "+e3x/e31/f3N3f3R3f3Z5f3d6fnl7fXp8fXt9fH1+fH5/gnR2gnV3gnZ4gXd5gHl6f3t8fnx9fX1+fX5/hXR1hXV2hHZ3g3h4gn"
         "l6gXt8gHx9fn5+fn9/iHR0h3V1h3Z2hXh3hHl5gnt8gXx9gH5+f39/",
}


def _decode(b64: str, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=np.uint8).reshape(shape)


def test_pil_ops_match_pillow_reference_outputs():
    img = _pil_test_image()
    gray = _decode(_PIL_GRAY, (7, 9))
    np.testing.assert_array_equal(T.pil_grayscale(img), np.dstack([gray] * 3))
    for radius, b64 in _PIL_BLUR.items():
        np.testing.assert_array_equal(T.pil_gaussian_blur(img, radius), _decode(b64, (7, 9, 3)),
                                      err_msg=f"radius {radius}")
    v = np.arange(256, dtype=np.uint8)[None, :, None].repeat(3, 2)
    sol = T.pil_solarize(v)[0, :, 0].astype(int)
    np.testing.assert_array_equal(sol[:128], np.arange(128))
    np.testing.assert_array_equal(sol[128:], 255 - np.arange(128, 256))


def test_colour_ops_follow_torchvision_formulas():
    img = torch.from_numpy(_image(6, 5, 7)).permute(2, 0, 1).float() / 255
    gray = 0.2989 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    assert torch.equal(T.adjust_brightness(img, 1.3), (1.3 * img + (1 - 1.3) * torch.zeros_like(img)).clamp(0, 1))
    torch.testing.assert_close(T.adjust_contrast(img, 0.7), (0.7 * img + 0.3 * gray.mean()).clamp(0, 1))
    torch.testing.assert_close(T.adjust_saturation(img, 1.4), (1.4 * img - 0.4 * gray).clamp(0, 1))
    # color_jitter: permutation(4), then the three factors, applied in the permuted order
    rng, replay = np.random.default_rng(9), np.random.default_rng(9)
    out = T.color_jitter(img, rng)
    order = replay.permutation(4)
    f = [replay.uniform(0.6, 1.4) for _ in range(3)]
    ops = [T.adjust_brightness, T.adjust_contrast, T.adjust_saturation]
    expected = img
    for k in order:
        if k < 3:
            expected = ops[k](expected, f[k])
    assert torch.equal(out, expected)
    assert out.min() >= 0 and out.max() <= 1


def test_deit3_is_shared_and_quantises():
    a = torch.from_numpy(_image(12, 10, 1)).permute(2, 0, 1).float() / 255
    b = torch.from_numpy(_image(20, 16, 2)).permute(2, 0, 1).float() / 255
    seen = set()
    for seed in range(40):
        (oa, ob), info = T.deit3_augment([a, b], np.random.default_rng(seed))
        seen.add(info["op"])
        qa = (a * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        qb = (b * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        radius = info.get("radius")
        fn = {"grayscale": T.pil_grayscale, "solarize": T.pil_solarize,
              "gaussian_blur": lambda q, r=radius: T.pil_gaussian_blur(q, r)}[info["op"]]
        for out, q in ((oa, qa), (ob, qb)):  # both images: same op, same radius
            assert torch.equal(out, torch.from_numpy(fn(q)).permute(2, 0, 1).float() / 255)
        if info["op"] == "gaussian_blur":
            assert 0.1 <= info["radius"] <= 2.0
        assert torch.equal((oa * 255).round() / 255, oa)
    assert seen == set(T.DEIT3_OPS)


# --------------------------------------------------------------------------------------- labels
def test_positive_cells_on_cell_boundaries():
    pos = T.positive_cell_indices(np.array([14.0, 28.0, 42.0, 56.0]), 224, 16)
    np.testing.assert_array_equal(pos, [2 * 16 + 1, 2 * 16 + 2, 3 * 16 + 1, 3 * 16 + 2])
    pos = T.positive_cell_indices(np.array([14.0, 28.0, 42.1, 56.0]), 224, 16)  # overlaps column 3
    np.testing.assert_array_equal(pos, [33, 34, 35, 49, 50, 51])
    assert T.positive_cell_indices(np.array([0.0, 0.0, 224.0, 224.0]), 224, 16).size == 256
    # non-square crop: (W, H) = (56, 28) -> 4 x 2 grid
    np.testing.assert_array_equal(T.positive_cell_indices(np.array([30.0, 15.0, 40.0, 20.0]), (56, 28), (4, 2)),
                                  [6])


def test_labels_and_template_masks_reproduce_official_fixtures():
    label = load_file(str(FIXTURES / "lorat_B_loss.safetensors"))
    io = load_file(str(FIXTURES / "lorat_A_io.safetensors"))
    gt = label["label.gt_boxes_search_region_px"].numpy()
    samples = []
    for g, m_box in zip(gt, io["input.z_boxes_template_px"].numpy()):
        samples.append({"z": torch.zeros(3, 112, 112), "x": torch.zeros(3, 224, 224),
                        "z_feat_mask": torch.from_numpy(T.template_foreground_mask(m_box, 112, 8)),
                        "positive_indices": torch.from_numpy(T.positive_cell_indices(g, 224, 16)),
                        "gt_box": torch.from_numpy((g / 224).astype(np.float32))})
    batch = T.collate_pairs(samples)
    assert torch.equal(batch["positive_sample_batch_dim_indices"], label["label.positive_sample_batch_dim_indices"])
    assert torch.equal(batch["positive_sample_map_dim_indices"], label["label.positive_sample_map_dim_indices"])
    assert torch.equal(batch["boxes"], label["label.boxes"])
    assert torch.equal(batch["num_positive_samples"], label["label.num_positive_samples"])
    assert torch.equal(batch["z_feat_mask"], io["input.z_feat_mask"])


def test_template_mask_any_overlap():
    m = T.template_foreground_mask(np.array([13.0, 14.0, 28.00001, 29.0]), 112, 8)
    expected = np.zeros((8, 8), dtype=np.int64)
    expected[1:3, 0:2] = 1  # x 13 -> col 0 (overlaps), x2 28.00001 within tolerance; y 29 claims row 2
    np.testing.assert_array_equal(m, expected)
    assert m.dtype == np.int64
    # boxes sticking out of the crop are clipped to it
    assert T.template_foreground_mask(np.array([-20.0, -5.0, 500.0, 7.0]), 112, 8).sum() == 8


# ------------------------------------------------------------------------------------ pipeline
def _frame_with_object(h=240, w=320, box=(100, 80, 180, 140), seed=0):
    img = np.random.default_rng(seed).integers(0, 60, (h, w, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = (200, 90, 30)
    return img, np.array(box, dtype=np.float64)


@pytest.mark.parametrize("search_size", [224, 378])
def test_transform_outputs_official_geometries(search_size):
    cfg = T.TransformConfig.for_resolution(search_size)
    tr = T.SiameseTrainTransform(cfg)
    z_img, z_box = _frame_with_object(seed=1)
    x_img, x_box = _frame_with_object(box=(110, 70, 200, 150), seed=2)
    out = tr(z_img, z_box, x_img, x_box, np.random.default_rng(0))
    tz, fz, fx = cfg.template_size, cfg.template_size // 14, search_size // 14
    assert out["z"].shape == (3, tz, tz) and out["x"].shape == (3, search_size, search_size)
    assert out["z_feat_mask"].shape == (fz, fz) and out["z_feat_mask"].dtype == torch.int64
    assert out["gt_box"].dtype == torch.float32 and ((out["gt_box"] >= 0) & (out["gt_box"] <= 1)).all()
    np.testing.assert_allclose(out["gt_box"].numpy(), out["x_box"].numpy() / search_size, rtol=1e-6)
    np.testing.assert_array_equal(out["positive_indices"].numpy(),
                                  T.positive_cell_indices(out["x_box"].numpy().astype(np.float64), search_size, fx))
    assert (bx.box_size(out["x_box"].numpy()) >= 10).all()
    # normalised: roughly zero-centred, and equal to (v - mean) / std of a quantised [0, 1] image
    raw = out["x"] * torch.tensor(T.IMAGENET_STD).view(3, 1, 1) + torch.tensor(T.IMAGENET_MEAN).view(3, 1, 1)
    assert raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6
    torch.testing.assert_close(raw * 255, (raw * 255).round(), atol=1e-3, rtol=0)


def test_template_is_never_jittered():
    cfg = T.TransformConfig(template_size=56, search_size=112, flip_prob=0.0, brightness=0.0, contrast=0.0,
                            saturation=0.0, deit3=False)
    tr = T.SiameseTrainTransform(cfg)
    z_img, z_box = _frame_with_object(seed=3)
    outs = [tr(z_img, z_box, z_img, z_box, np.random.default_rng(seed)) for seed in range(5)]
    for o in outs[1:]:
        assert torch.equal(o["z"], outs[0]["z"]) and torch.equal(o["z_box"], outs[0]["z_box"])
    assert len({tuple(o["x_box"].tolist()) for o in outs}) == 5
    # the template is centred with area factor 2: the box sits in the middle, half the crop wide
    zb = outs[0]["z_box"].numpy()
    np.testing.assert_allclose(bx.box_center(zb), [28, 28], atol=0.6)


def test_flips_are_independent_per_image():
    cfg = T.TransformConfig(template_size=28, search_size=56, scale_jitter=0.0, translation_jitter=0.0,
                            brightness=0.0, contrast=0.0, saturation=0.0, deit3=False)
    tr = T.SiameseTrainTransform(cfg)
    img, box = _frame_with_object(box=(60, 80, 130, 120), seed=4)
    plain = T.SiameseTrainTransform(replace(cfg, flip_prob=0.0))(img, box, img, box, np.random.default_rng(0))
    combos = []
    for seed in range(48):
        o = tr(img, box, img, box, np.random.default_rng(seed))
        fz = torch.equal(o["z"], plain["z"].flip(-1))
        fx = torch.equal(o["x"], plain["x"].flip(-1))
        assert fz or torch.equal(o["z"], plain["z"])
        assert fx or torch.equal(o["x"], plain["x"])
        if fz:
            np.testing.assert_allclose(o["z_box"].numpy(), bx.hflip(plain["z_box"].numpy(), 28), atol=1e-5)
        combos.append((fz, fx))
    assert set(combos) == {(False, False), (False, True), (True, False), (True, True)}
    assert 0.3 < np.mean([c[0] for c in combos]) < 0.7 and 0.3 < np.mean([c[1] for c in combos]) < 0.7


def test_pipeline_applies_one_3augment_to_both_images():
    cfg = T.TransformConfig(template_size=28, search_size=56, flip_prob=0.0, brightness=0.0, contrast=0.0,
                            saturation=0.0)
    tr = T.SiameseTrainTransform(cfg)
    z_img, z_box = _frame_with_object(seed=5)
    x_img, x_box = _frame_with_object(box=(120, 60, 190, 130), seed=6)
    std, mean = torch.tensor(T.IMAGENET_STD).view(3, 1, 1), torch.tensor(T.IMAGENET_MEAN).view(3, 1, 1)
    n_gray = 0
    for seed in range(30):
        o = tr(z_img, z_box, x_img, x_box, np.random.default_rng(seed))
        gray = [bool(((o[k] * std + mean)[0] - (o[k] * std + mean)[1]).abs().max() < 1e-5) for k in ("z", "x")]
        assert gray[0] == gray[1]
        n_gray += gray[0]
    assert 0 < n_gray < 30


def test_rejection_returns_none():
    tr = T.SiameseTrainTransform(T.TransformConfig(template_size=28, search_size=56))
    img, _ = _frame_with_object()
    thin = np.array([10.0, 10.0, 10.5, 200.0])
    assert tr(img, np.array([100.0, 80, 180, 140]), img, thin, np.random.default_rng(0)) is None
    assert tr(img, np.array([5.0, 5, 5, 9]), img, thin, np.random.default_rng(0)) is None  # empty template box


def test_collate_shapes_and_targets():
    cfg = T.TransformConfig(template_size=28, search_size=56)
    tr = T.SiameseTrainTransform(cfg)
    img, box = _frame_with_object()
    samples = [tr(img, box, img, box, np.random.default_rng(s)) for s in range(3)]
    batch = T.collate_pairs(samples)
    assert batch["z"].shape == (3, 3, 28, 28) and batch["x"].shape == (3, 3, 56, 56)
    assert batch["z_feat_mask"].shape == (3, 2, 2) and batch["boxes"].shape == (3, 4)
    counts = [len(s["positive_indices"]) for s in samples]
    assert batch["num_positive_samples"].tolist() == [float(sum(counts))]
    np.testing.assert_array_equal(batch["positive_sample_batch_dim_indices"].numpy(), np.repeat([0, 1, 2], counts))
    assert torch.equal(batch["positive_sample_map_dim_indices"], torch.cat([s["positive_indices"] for s in samples]))
    assert batch["x_box"].shape == (3, 4)


def test_geometry_from_model_config(tiny_cfg):
    cfg = T.TransformConfig.from_model_config(tiny_cfg)
    assert (cfg.template_size, cfg.search_size, cfg.stride) == (28, 56, 14)
    np.testing.assert_array_equal(cfg.search_feat_size, [4, 4])
    tr = T.SiameseTrainTransform.from_model_config(tiny_cfg, deit3=False)
    assert tr.config.deit3 is False and tr.config.search_area_factor == tiny_cfg.search_area_factor
    quiet = cfg.without_augmentation()
    img, box = _frame_with_object()
    a = T.SiameseTrainTransform(quiet)(img, box, img, box, np.random.default_rng(0))
    b = T.SiameseTrainTransform(quiet)(img, box, img, box, np.random.default_rng(1))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_image_mean_of_a_decoded_frame_is_the_float64_mean_to_the_bit():
    from lorat.data.transforms import image_mean

    rng = np.random.default_rng(5)
    for h, w in ((120, 160), (1080, 1920), (1, 1)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = img.reshape(-1, 3).mean(axis=0, dtype=np.float64).astype(np.float32)
        assert np.array_equal(image_mean(img).numpy(), want), (h, w)
    big = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    for arr in (big[:, ::2], big[::3], big[:, ::-1], big.astype(np.float32)):  # views and floats: numpy's path
        want = np.asarray(arr).reshape(-1, 3).mean(axis=0, dtype=np.float64).astype(np.float32)
        assert np.array_equal(image_mean(arr).numpy(), want)
    assert image_mean(big).dtype == torch.float32 and image_mean(big).shape == (3,)

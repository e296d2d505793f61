"""On-the-fly augmentation for training (numpy + OpenCV, backend-agnostic).

Geometric: rotation, shift, scale (optionally a different scale along x and
y, as an export squashed to a square), applied identically to image and mask;
a zoom-out fills the margin with black, a grey or the image's edge.
Photometric: brightness, contrast, gamma. No horizontal flip: "left" and
"right" are the patient's sides, and a flip would swap them. Optionally,
framing bands: the radiograph shrunk inside uniform bands on some sides, as
padding, a letterbox or collimation frames it (off by default).

The degradations of other hospitals' exports (:data:`STRONG`, ``train
--augment strong``): blur, edge enhancement (unsharp masking, the rib-sharp
look of many processed radiographs), Gaussian and Poisson noise, JPEG
compression and burned-in text. Each draws random numbers only when it is
switched on, so the recipes from before them reproduce unchanged.

Hand-written on OpenCV rather than albumentations: every draw comes from the
one generator the training batches are seeded with (seed, epoch, batch), so
a run reproduces exactly whatever threads build its batches, and the
transforms are a few lines each.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from .preprocess import finish_intensity


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 10.0
    shift_fraction: float = 0.08
    scale_range: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.1        # additive, in [0, 1] intensity units
    contrast: tuple[float, float] = (0.8, 1.2)
    gamma: tuple[float, float] = (0.7, 1.5)
    # Share of copies framed by bands (0: never; the recipes before it drew no
    # random numbers for it, so they reproduce unchanged) and a band's width
    # as a fraction of the side. A band's level is black, white or a grey.
    band_probability: float = 0.0
    band_fraction: tuple[float, float] = (0.02, 0.15)
    # Other hospitals' exports (all off by default; STRONG switches them on).
    aspect_range: tuple[float, float] = (1.0, 1.0)   # x scale / y scale
    margin_grey_probability: float = 0.0             # a zoom-out's margin grey or edge, not black
    blur_probability: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.5)     # model pixels
    sharpen_probability: float = 0.0
    sharpen_amount: tuple[float, float] = (0.5, 2.5)
    sharpen_sigma: tuple[float, float] = (1.0, 4.0)
    noise_probability: float = 0.0
    noise_sigma: tuple[float, float] = (0.005, 0.04)   # Gaussian, intensity units
    poisson_counts: tuple[float, float] = (150.0, 1500.0)  # photons at full intensity
    jpeg_probability: float = 0.0
    jpeg_quality: tuple[int, int] = (15, 85)
    text_probability: float = 0.0
    # Opacities: soft bright patches, mostly inside the region, the mask unchanged
    # (consolidation, effusion, scarring: the SCR cases hardly show them, and a
    # model that never saw one treats a bright lung as outside the lung).
    opacity_probability: float = 0.0
    opacity_strength: tuple[float, float] = (0.3, 0.9)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "AugmentConfig":
        """The config a manifest recorded (lists back to tuples; unknown keys ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: tuple(v) if isinstance(v, list) else v
                      for k, v in values.items() if k in known})


# What radiographs from other hospitals need (the generalisation issue): scale
# 0.7-1.3 with aspect 0.8-1.25, rotation 15 degrees, shifts 15%, gamma 0.4-2.5,
# and the degradations above. Framing bands stay a flag of their own.
STRONG = AugmentConfig(rotation_deg=15.0, shift_fraction=0.15, scale_range=(0.7, 1.3),
                       brightness=0.15, contrast=(0.6, 1.4), gamma=(0.4, 2.5),
                       aspect_range=(0.8, 1.25), margin_grey_probability=0.5,
                       blur_probability=0.2, sharpen_probability=0.4, noise_probability=0.4,
                       jpeg_probability=0.3, text_probability=0.3)
# ... and with opacities in the lungs (consolidation, effusion), the lesions that
# other hospitals' abnormal radiographs show and the SCR cases do not.
STRONG_OPACITIES = replace(STRONG, opacity_probability=0.5)
AUGMENT_PRESETS = {"standard": AugmentConfig(), "strong": STRONG, "strong+opacities": STRONG_OPACITIES}


# Padding for every geometric transform, in training and in the position tests:
# outside the radiograph is black, like the air around a patient.
BORDER_VALUE = 0.0


def affine_matrix(size: int, angle_deg: float = 0.0, scale: float = 1.0,
                  shift_x: float = 0.0, shift_y: float = 0.0, aspect: float = 1.0) -> np.ndarray:
    """2x3 matrix: scale (x by scale * sqrt(aspect), y by scale / sqrt(aspect)) and rotate
    about the centre, then shift (fractions of size). Never a reflection."""
    centre = (size / 2.0, size / 2.0)
    m = cv2.getRotationMatrix2D(centre, angle_deg, scale)
    if aspect != 1.0:
        stretch = np.diag([np.sqrt(aspect), 1.0 / np.sqrt(aspect)])
        m[:, :2] = m[:, :2] @ stretch
        m[:, 2] = np.asarray(centre) - m[:, :2] @ np.asarray(centre)
    m[0, 2] += shift_x * size
    m[1, 2] += shift_y * size
    return m


def warp(image: np.ndarray, matrix: np.ndarray, nearest: bool = False,
         border_value: float = BORDER_VALUE) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.warpAffine(image, matrix, (w, h),
                          flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)


def frame_in_bands(image: np.ndarray, mask: np.ndarray, widths, level: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Shrink image and mask into the rectangle that bands of ``widths`` (top,
    bottom, left, right; fractions of the side) leave, and fill the bands with
    ``level``: what padding an exported radiograph does to the model's input."""
    size = image.shape[0]
    top, bottom, left, right = (int(round(w * size)) for w in widths)
    inner_h, inner_w = size - top - bottom, size - left - right
    img = np.full_like(image, level)
    msk = np.zeros_like(mask)
    img[top:top + inner_h, left:left + inner_w] = cv2.resize(image, (inner_w, inner_h),
                                                             interpolation=cv2.INTER_AREA)
    msk[top:top + inner_h, left:left + inner_w] = cv2.resize(mask, (inner_w, inner_h),
                                                             interpolation=cv2.INTER_NEAREST)
    return img, msk


def geometric(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
              cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """The same random affine map applied to image (bilinear) and mask (nearest)."""
    size = image.shape[0]
    angle, scale = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg), rng.uniform(*cfg.scale_range)
    shift_x = rng.uniform(-cfg.shift_fraction, cfg.shift_fraction)
    shift_y = rng.uniform(-cfg.shift_fraction, cfg.shift_fraction)
    aspect = (np.exp(rng.uniform(*np.log(cfg.aspect_range)))
              if cfg.aspect_range != (1.0, 1.0) else 1.0)
    m = affine_matrix(size, angle, scale, shift_x, shift_y, aspect)
    msk = warp(mask.astype(np.float32), m, nearest=True)
    if cfg.margin_grey_probability > 0 and rng.uniform() < cfg.margin_grey_probability:
        # A zoomed-out child in a grey detector field, or a film's edge carried on.
        if rng.uniform() < 0.5:
            img = cv2.warpAffine(image.astype(np.float32), m, (size, size), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
        else:
            img = warp(image.astype(np.float32), m, border_value=float(rng.uniform(0.1, 0.9)))
    else:
        img = warp(image.astype(np.float32), m)
    return img, msk


def blur_or_sharpen(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    if cfg.blur_probability > 0 and rng.uniform() < cfg.blur_probability:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*cfg.blur_sigma))
    if cfg.sharpen_probability > 0 and rng.uniform() < cfg.sharpen_probability:
        # Unsharp masking: the edge enhancement most exports apply, which makes ribs
        # and vessels stand out in a way the smooth JSRT radiographs never show.
        amount, sigma = rng.uniform(*cfg.sharpen_amount), rng.uniform(*cfg.sharpen_sigma)
        img = img + amount * (img - cv2.GaussianBlur(img, (0, 0), sigma))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def add_noise(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    if not (cfg.noise_probability > 0 and rng.uniform() < cfg.noise_probability):
        return img
    if rng.uniform() < 0.5:
        img = img + rng.normal(0.0, rng.uniform(*cfg.noise_sigma), img.shape)
    else:   # quantum noise: variance grows with the signal
        counts = rng.uniform(*cfg.poisson_counts)
        img = rng.poisson(np.clip(img, 0.0, 1.0) * counts) / counts
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def jpeg_compress(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    if not (cfg.jpeg_probability > 0 and rng.uniform() < cfg.jpeg_probability):
        return img
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    ok, data = cv2.imencode(".jpg", np.round(img * 255).astype(np.uint8),
                            [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0 if ok else img


def burn_in_text(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """One to three labels (a side marker, a date, a block of text) in white or black,
    anywhere: the mask is unchanged, the anatomy under a label is still anatomy."""
    if not (cfg.text_probability > 0 and rng.uniform() < cfg.text_probability):
        return img
    img = img.copy()
    size = img.shape[0]
    letters = "LRAPSUPINE0123456789:/ "
    for _ in range(int(rng.integers(1, 4))):
        text = "".join(rng.choice(list(letters), int(rng.integers(1, 12))))
        scale = rng.uniform(0.3, 1.5) * size / 256
        origin = (int(rng.integers(0, size * 3 // 4)), int(rng.integers(size // 10, size)))
        level = 1.0 if rng.uniform() < 0.8 else 0.0
        if rng.uniform() < 0.3:   # a filled box behind the label
            w, h = int(len(text) * 12 * scale), int(24 * scale)
            cv2.rectangle(img, (origin[0], origin[1] - h), (origin[0] + w, origin[1] + h // 4),
                          1.0 - level, thickness=-1)
        # OpenCV draws text on 8-bit images only: draw its coverage, then blend.
        coverage = np.zeros(img.shape, np.uint8)
        cv2.putText(coverage, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 255,
                    thickness=max(1, int(round(2 * scale))), lineType=cv2.LINE_AA)
        alpha = coverage.astype(np.float32) / 255.0
        img = img * (1.0 - alpha) + level * alpha
    return img.astype(np.float32)


def add_opacities(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                  cfg: AugmentConfig) -> np.ndarray:
    """One to four soft elliptical patches brightening the image, centred on the mask
    three times in four: textured (blurred noise) so they are not flat discs."""
    if not (cfg.opacity_probability > 0 and rng.uniform() < cfg.opacity_probability):
        return img
    size = img.shape[0]
    inside = np.argwhere(mask > 0)
    patches = np.zeros_like(img)
    for _ in range(int(rng.integers(1, 5))):
        if len(inside) and rng.uniform() < 0.75:
            cy, cx = inside[rng.integers(len(inside))]
        else:
            cy, cx = rng.integers(0, size, 2)
        axes = (int(rng.uniform(0.04, 0.2) * size), int(rng.uniform(0.04, 0.2) * size))
        blob = np.zeros_like(img)
        cv2.ellipse(blob, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), max(axes) / 3 + 1)
        patches = np.maximum(patches, blob * rng.uniform(*cfg.opacity_strength))
    texture = cv2.GaussianBlur(rng.uniform(0.5, 1.5, img.shape).astype(np.float32), (0, 0), size / 64)
    return np.clip(img + patches * texture * (1.0 - img), 0.0, 1.0).astype(np.float32)


def augment_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                 cfg: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray]:
    """image: (S, S) float32 in [0, 1]; mask: (S, S) uint8. Returns augmented copies."""
    size = image.shape[0]
    img, msk = geometric(image, mask, rng, cfg)
    img = add_opacities(img, msk, rng, cfg)
    img = np.clip(img, 0.0, 1.0) ** rng.uniform(*cfg.gamma)
    img = (img - 0.5) * rng.uniform(*cfg.contrast) + 0.5 + rng.uniform(-cfg.brightness, cfg.brightness)
    img, msk = np.clip(img, 0.0, 1.0).astype(np.float32), (msk > 0.5).astype(np.uint8)
    img = burn_in_text(jpeg_compress(add_noise(blur_or_sharpen(img, rng, cfg), rng, cfg), rng, cfg),
                       rng, cfg)
    if cfg.band_probability > 0 and rng.uniform() < cfg.band_probability:
        # After the photometric jitter: a padded export's bands are flat, at
        # the level the export chose, whatever the tone curve inside.
        sides = rng.uniform(size=4) < 0.5
        sides[rng.integers(4)] = True                      # at least one side
        widths = np.where(sides, rng.uniform(*cfg.band_fraction, size=4), 0.0)
        level = (0.0, 1.0, rng.uniform(0.2, 0.8))[rng.integers(3)]
        img, msk = frame_in_bands(img, msk, widths, level)
    return img, msk


def augmented_copies(images: np.ndarray, copies: int, seed: int = 0,
                     cfg: AugmentConfig = AugmentConfig(), intensity: str | None = None) -> np.ndarray:
    """(N, S, S) images in [0, 1] -> (N * copies, S, S, 3) float32 freshly augmented
    model inputs, as one training epoch sees them, the model-space intensity step
    (``intensity``) last (used to re-estimate batch-norm statistics on the
    distribution the weights were trained on)."""
    rng = np.random.default_rng(seed)
    empty = np.zeros(images.shape[1:3], np.uint8)
    out = np.empty((len(images) * copies,) + images.shape[1:3] + (3,), np.float32)
    for k in range(copies):
        for i, image in enumerate(images):
            x = augment_pair(image.astype(np.float32), empty, rng, cfg)[0]
            out[k * len(images) + i] = finish_intensity(x, intensity)[..., None]
    return out

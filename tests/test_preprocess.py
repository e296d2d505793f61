import numpy as np
import pytest

from cxr_dash.preprocess import (FULL_VIEW, FieldOfView, normalise_intensity, prepare_input,
                                 resize_image, resize_mask, upsample_probability)
from cxr_dash.regions import REGIONS


def test_field_of_view_parses_and_validates():
    assert FieldOfView.parse(None) is FULL_VIEW and FieldOfView.parse("full").is_full
    view = FieldOfView.parse([0, 0.5, 0.4, 1])
    assert view.as_list() == [0.0, 0.5, 0.4, 1.0] and not view.is_full
    assert FieldOfView.parse(view.as_list()) == view
    assert view.box((1000, 1000)) == (0, 500, 400, 1000)
    # Non-square: fractions of the centred square frame, which may reach past the image.
    assert view.box((1024, 1000)) == (0, 512, 398, 1012)
    assert FULL_VIEW.box((800, 1000)) == (-100, 900, 0, 1000)
    for bad in ([0.5, 0.5, 0, 1], [0, 1.2, 0, 1], [0, 1, 0.7, 0.3], [0, 1, 0]):
        with pytest.raises(ValueError):
            FieldOfView.parse(bad)


def test_model_input_is_the_field_of_view_of_the_whole_image_window():
    rng = np.random.default_rng(0)
    image = (rng.random((400, 400)) * 4000).astype(np.uint16)
    image[:200, 200:] += 3000                       # a bright quadrant: the crop's own window would differ
    view = FieldOfView(0.0, 0.5, 0.5, 1.0)
    x = prepare_input(image, 32, view)
    assert x.shape == (32, 32, 3)
    # The whole image's intensity window, then the crop: a region's intensities do
    # not depend on its field of view (the crop's own window would re-stretch them).
    expected = resize_image(normalise_intensity(image)[:200, 200:], 32)
    assert np.allclose(x[..., 0], expected, atol=1e-6)
    assert np.abs(prepare_input(image[:200, 200:], 32)[..., 0] - expected).max() > 0.1


def test_non_square_image_is_completed_to_its_square_frame_not_squashed():
    rng = np.random.default_rng(1)
    portrait = (rng.random((120, 80)) * 4000).astype(np.uint16)
    # Model input: the intensity window of the image itself, then its border columns
    # repeated out to a 120 x 120 square (20 each side), then resized.
    framed = np.pad(normalise_intensity(portrait), ((0, 0), (20, 20)), mode="edge")
    assert np.allclose(prepare_input(portrait, 40)[..., 0], resize_image(framed, 40), atol=1e-6)
    # A clavicle-like view of the frame: rows 0-50%, columns 0-60% of 120 = -20..52.
    view = FieldOfView(0.0, 0.5, 0.0, 0.6)
    assert view.box(portrait.shape) == (0, 60, -20, 52)
    assert np.allclose(prepare_input(portrait, 36, view)[..., 0],
                       resize_image(framed[:60, :72], 36), atol=1e-6)
    # Back to the image: the model's map over the frame, cropped to the image's columns.
    model_map = np.tile(np.linspace(0, 1, 36, dtype=np.float32), (36, 1))
    back = upsample_probability(model_map, portrait.shape, view)
    assert back.shape == (120, 80)
    assert np.allclose(back[:60, :52], upsample_probability(model_map, (72, 72))[:60, 20:])
    assert back[60:].max() == 0 and back[:, 52:].max() == 0
    # Masks are completed with background, not their edge.
    mask = np.ones((120, 80), bool)
    assert resize_mask(mask, 12).sum() == 12 * 8


def test_model_space_maps_return_inside_the_field_of_view_only():
    view = FieldOfView(0.0, 0.5, 0.4, 1.0)
    back = upsample_probability(np.full((16, 16), 0.8, np.float32), (200, 200), view)
    assert back.shape == (200, 200)
    assert np.allclose(back[:100, 80:], 0.8) and back[100:].max() == 0 and back[:, :80].max() == 0
    full = upsample_probability(np.full((16, 16), 0.3, np.float32), (100, 200))
    assert full.shape == (100, 200) and np.allclose(full, 0.3)


def test_mask_round_trip_through_a_field_of_view():
    mask = np.zeros((512, 512), bool)
    mask[40:120, 300:460] = True
    view = FieldOfView(0.0, 0.5, 0.4, 1.0)
    small = resize_mask(mask, 64, view)
    assert small.shape == (64, 64) and small.dtype == np.uint8
    back = upsample_probability(small.astype(np.float32), mask.shape, view) >= 0.5
    inter, union = (back & mask).sum(), (back | mask).sum()
    assert inter / union > 0.95


def test_clavicle_views_hold_every_clavicle_of_unseen_cases(dataset):
    """The views were chosen on the odd fold; they must hold the even fold's clavicles too."""
    for case_id in dataset.folds()["even"][::5]:
        for region in ("left_clavicle", "right_clavicle"):
            mask = dataset.load_mask(case_id, region)
            y0, y1, x0, x1 = FieldOfView.parse(REGIONS[region].field_of_view).box(mask.shape)
            inside = mask[y0:y1, x0:x1].sum()
            assert inside == mask.sum() > 0, (case_id, region)
            # ... with a margin: nothing within 5% of the box's inner edges.
            margin = int(0.05 * mask.shape[0])
            assert not mask[y1 - margin:y1, x0:x1].any()


def test_field_of_view_box_is_drawn_on_its_edges_only():
    from cxr_dash.render import outline_box

    rgb = np.zeros((120, 120, 3), np.uint8)
    y0, y1, x0, x1 = FieldOfView(0.0, 0.5, 0.4, 1.0).box(rgb.shape)
    drawn = outline_box(rgb, (y0, y1, x0, x1), (255, 0, 0))[..., 0] > 0
    assert drawn[y0, x0] and drawn[y1 - 1, x1 - 1]              # corners
    assert not drawn[y0 + 5:y1 - 5, x0 + 5:x1 - 5].any()        # inside untouched
    assert not drawn[y1 + 1:].any() and not drawn[:, :x0].any()  # outside untouched
    assert 0.3 < drawn[y0, x0:x1].mean() < 0.8                  # dashed
    # On a non-square image the box may start past its edge: drawn where it is visible.
    wide = np.zeros((100, 120, 3), np.uint8)
    box = FieldOfView(0.0, 0.5, 0.4, 1.0).box(wide.shape)
    assert box[0] < 0
    drawn = outline_box(wide, box, (255, 0, 0))[..., 0] > 0
    assert drawn[0, box[2]:box[3]].any() and drawn[:box[1], box[2]].any()


def test_display_window_stretches_a_band_of_intensities_to_full_contrast():
    from cxr_dash.render import display_rgb

    ramp = np.tile(np.linspace(0, 1000, 200, dtype=np.float32), (50, 1))
    full, narrow = display_rgb(ramp), display_rgb(ramp, (0.25, 0.75))
    assert np.array_equal(full, display_rgb(ramp, (0.0, 1.0)))
    assert (narrow[..., 0] == 0).mean() > 0.2 and (narrow[..., 0] == 255).mean() > 0.2
    assert (full[..., 0] == 0).mean() < 0.05
    mid = ramp.shape[1] // 2
    assert abs(int(narrow[0, mid, 0]) - 127) <= 2          # the band's centre stays mid-grey


def test_local_contrast_raises_contrast_inside_a_flat_band_only_on_display():
    from cxr_dash.render import display_rgb

    # A washed-out film: faint detail (+-3 of 255) on a bright background.
    rng = np.random.default_rng(0)
    film = np.full((256, 256), 0.5, np.float32)
    film[:, :128] = 220 + 3 * np.sin(np.arange(128) / 3.0)
    film[:, 128:] = 40 + rng.normal(0, 1, (256, 128))
    plain, enhanced = display_rgb(film), display_rgb(film, local_contrast=True)
    assert plain.shape == enhanced.shape == (256, 256, 3)
    detail = slice(40, 216), slice(40, 100)
    assert enhanced[detail][..., 0].std() > 2 * plain[detail][..., 0].std()
    assert np.array_equal(display_rgb(film), plain)        # nothing cached or altered in place


def test_heatmap_opacity_above_one_counts_as_one():
    from cxr_dash.render import overlay_heatmap

    base = np.full((32, 32, 3), 100, np.uint8)
    heat = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    assert np.array_equal(overlay_heatmap(base, heat, 1.2), overlay_heatmap(base, heat, 1.0))


def _textured(h, w, seed=0):
    """Anatomy stand-in: smooth structure plus grain, nothing flat along any line."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    return (120 + 60 * np.sin(xx / 23.0) * np.cos(yy / 31.0) + rng.normal(0, 8, (h, w))).astype(np.float32)


@pytest.mark.parametrize("level", [0.0, 255.0, 120.0])
def test_content_box_finds_wide_uniform_bands_whatever_their_level(level):
    from cxr_dash.preprocess import content_box

    padded = np.full((1300, 1200), level, np.float32)
    padded[150:1150, 200:1000] = _textured(1000, 800)
    padded += np.random.default_rng(1).normal(0, 1.5, padded.shape)      # a scanned margin's noise
    y0, y1, x0, x1 = content_box(padded)
    # Never more than the bands, at most a few pixels of them left.
    assert 150 - 4 <= y0 <= 150 and 1150 <= y1 <= 1150 + 4
    assert 200 - 4 <= x0 <= 200 and 1000 <= x1 <= 1000 + 4


def test_content_box_keeps_narrow_bands_and_unpadded_images():
    from cxr_dash.preprocess import BORDER_MIN_FRACTION, content_box

    image = _textured(1000, 1000)
    assert content_box(image) == (0, 1000, 0, 1000)
    # A band under BORDER_MIN_FRACTION of the side (SCR's own scanner margins reach 3.9%) stays.
    narrow = image.copy()
    narrow[-int(0.04 * 1000):] = 0
    assert BORDER_MIN_FRACTION > 0.04 and content_box(narrow) == (0, 1000, 0, 1000)
    wide = image.copy()
    wide[-100:] = 0
    assert content_box(wide) == (0, 900, 0, 1000)
    # Burned-in text in a band stops the band there: the crop keeps the text, cuts no anatomy.
    labelled = wide.copy()
    labelled[-60:-40, 100:300] = 255
    assert content_box(labelled)[1] >= 1000 - 40
    # Blank or almost blank: nothing sensible to crop to.
    assert content_box(np.zeros((500, 400))) == (0, 500, 0, 400)
    speck = np.zeros((500, 400))
    speck[240:260, 190:210] = 1
    assert content_box(speck) == (0, 500, 0, 400)


def test_content_box_leaves_every_development_radiograph_as_it_is(dataset):
    """The models were trained on these frames, bands of up to 3.9% of a side included."""
    from cxr_dash.preprocess import content_box

    for case_id in dataset.cases_with_masks():
        pixels = dataset.load_image(case_id).pixels
        assert content_box(pixels) == (0, pixels.shape[0], 0, pixels.shape[1]), case_id


def test_difference_view_colours_agreement_missed_and_extra_area_apart():
    from cxr_dash.render import AGREEMENT_COLOUR, EXTRA_COLOUR, MISSED_COLOUR, overlay_errors

    base = np.full((100, 100, 3), 100, np.uint8)
    truth = np.zeros((100, 100), bool)
    truth[20:80, 20:60] = True
    predicted = np.zeros((100, 100), bool)
    predicted[20:80, 40:90] = True
    out = overlay_errors(base, predicted, truth, opacity=1.0)
    assert tuple(out[50, 30]) == MISSED_COLOUR               # truth the model missed
    assert tuple(out[50, 75]) == EXTRA_COLOUR                # mask outside the truth
    assert tuple(out[50, 50]) == AGREEMENT_COLOUR            # both
    assert tuple(out[5, 5]) == (100, 100, 100)               # background untouched
    colours = {AGREEMENT_COLOUR, MISSED_COLOUR, EXTRA_COLOUR}
    assert len(colours) == 3 and not colours & {r.colour for r in REGIONS.values()}


def test_outlines_stay_on_top_of_every_fill_where_regions_overlap():
    from cxr_dash.render import outline, overlay_masks

    base = np.full((90, 90, 3), 100, np.uint8)
    lung = np.zeros((90, 90), bool)
    lung[10:80, 10:80] = True
    clavicle = np.zeros((90, 90), bool)
    clavicle[5:30, 20:60] = True                              # over the lung's top edge
    out = overlay_masks(base, {"left_clavicle": clavicle, "left_lung": lung}, 0.5, "both", 1)
    edge = outline(clavicle, 1) & lung & ~outline(lung, 1)    # its outline inside the lung fill
    assert edge.any() and (out[edge] == REGIONS["left_clavicle"].colour).all()


def test_zoom_box_frames_the_region_squarely_inside_the_image():
    from cxr_dash.render import zoom_box

    mask = np.zeros((400, 300), bool)
    mask[100:140, 50:150] = True                              # 40 x 100, a clavicle's shape
    y0, y1, x0, x1 = zoom_box(mask.shape, mask)
    assert y1 - y0 == x1 - x0 == 130                          # 100 px + 15% each side
    assert y0 <= 100 and y1 >= 140 and x0 <= 50 and x1 >= 150
    corner = np.zeros((400, 300), bool)
    corner[380:, 280:] = True                                 # at the edge: shifted inside
    assert zoom_box(corner.shape, corner) == (336, 400, 236, 300)   # min_side 64
    assert zoom_box(mask.shape, np.zeros_like(mask)) == (0, 400, 0, 300)
    big = np.ones((400, 300), bool)
    assert zoom_box(big.shape, big) == (50, 350, 0, 300)      # never past the image


def test_a_window_from_an_area_stretches_that_area_to_full_contrast():
    from cxr_dash.render import display_rgb, window_for_area

    image = np.tile(np.linspace(0, 255, 200), (100, 1)).astype(np.float32)   # dark left, bright right
    lo, hi = window_for_area(image, (0, 100, 150, 200))                      # the bright quarter
    assert 0.7 < lo < hi <= 1.0
    shown = display_rgb(image, (lo, hi))[..., 0]
    assert shown[:, :140].max() == 0 and shown[:, 150:].min() < 10 and shown[:, 199].max() == 255
    flat = np.full((50, 50), 7.0)
    flat[0, 0] = 200
    assert window_for_area(flat, (10, 40, 10, 40))[1] - window_for_area(flat, (10, 40, 10, 40))[0] >= 0.02
    assert window_for_area(image, (40, 40, 250, 260)) == (0.0, 1.0)         # outside: no change

import numpy as np

from fitad.prep.crop import Figure, crop_square, find_figures, pad_color, same_figure, square_box


def blob_mask(shape, boxes):
    mask = np.zeros(shape, np.uint8)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = 255
    return mask


def test_two_separate_figures_give_two_crops_largest_first():
    mask = blob_mask((300, 400), [(20, 40, 120, 280), (220, 60, 360, 290)])
    figures = find_figures(mask)
    assert [f.bbox for f in figures] == [(220, 60, 360, 290), (20, 40, 120, 280)]
    assert len(find_figures(mask, split=False)) == 1


def test_noise_is_dropped_and_pieces_are_merged():
    # torso, legs cut off below it by a balloon, a hand beyond the balloon, and a speck of noise
    mask = blob_mask((400, 400), [(100, 50, 220, 200), (120, 240, 200, 380), (40, 120, 60, 140), (350, 10, 353, 13)])
    figures = find_figures(mask, min_area_frac=0.004)
    assert len(figures) == 1
    assert figures[0].bbox == (40, 50, 220, 380)


def test_similar_sized_neighbours_stay_separate():
    a, b = Figure((0, 0, 100, 200), 15000), Figure((130, 0, 230, 200), 14000)
    assert not same_figure(a, b)
    assert same_figure(a, Figure((10, 210, 90, 300), 5000))  # legs below, within the width


def test_square_box_stays_inside_the_image_when_it_fits():
    x0, y0, x1, y1 = square_box((10, 20, 60, 120), 0.1, 400, 300)
    assert x1 - x0 == y1 - y0 == 120 and x0 >= 0 and y0 >= 0 and x1 <= 400 and y1 <= 300
    assert x0 <= 10 and y0 <= 20 and x1 >= 60 and y1 >= 120


def test_subject_larger_than_image_is_padded_not_stretched():
    rgb = np.full((100, 300, 3), 200, np.uint8)
    rgb[20:80, 10:290] = (255, 0, 0)  # a wide red subject
    box = square_box((10, 20, 290, 80), 0.0, 300, 100)
    assert box[2] - box[0] == 280 and box[1] < 0  # square taller than the image
    out = crop_square(rgb, box, 64, pad_mode="white")
    assert out.shape == (64, 64, 3)
    assert out[2, 32].tolist() == [255, 255, 255]                  # padding above
    assert out[32, 32].tolist() == [255, 0, 0]                      # subject in the middle
    red_rows = np.flatnonzero((out[:, 32] == [255, 0, 0]).all(axis=1))
    assert 10 <= len(red_rows) <= 16                                # 60/280 of 64 px: aspect kept


def test_pad_colours():
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[:] = (10, 20, 30)
    assert pad_color(rgb, "auto") == (10, 20, 30)
    assert pad_color(rgb, "black") == (0, 0, 0) and pad_color(rgb, "edge") is None
    out = crop_square(rgb, (-5, -5, 15, 15), 40, pad_mode="edge")
    assert (out == (10, 20, 30)).all()


def test_auto_pad_uses_the_subjects_background_not_the_frame_line():
    rgb = np.full((100, 100, 3), 250, np.uint8)
    rgb[:3], rgb[-3:], rgb[:, :3], rgb[:, -3:] = 0, 0, 0, 0   # a black panel frame round the image
    rgb[40:60, 10:30] = (200, 0, 0)                           # the subject near the left border
    out = crop_square(rgb, (-20, 10, 60, 90), 80, pad_mode="auto")
    assert out[50, 5].tolist() == [250, 250, 250]   # the pad on the left takes the background colour
    assert out[50, 22].tolist() == [0, 0, 0]        # the frame itself is still there, not stretched

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
    # torso, legs cut off below it by a balloon (its lettering in the gap), a hand just beside, a speck of noise
    mask = blob_mask((400, 400), [(100, 50, 220, 200), (120, 240, 200, 380), (225, 120, 240, 135), (350, 10, 353, 13)])
    text = blob_mask((400, 400), [(110, 212, 210, 228)])
    figures = find_figures(mask, min_area_frac=0.004, text_mask=text)
    assert [f.bbox for f in figures] == [(100, 50, 240, 380)]
    # without the lettering nothing says the lower piece belongs to the upper one: two subjects
    assert sorted(f.bbox for f in find_figures(mask, min_area_frac=0.004)) == [(100, 50, 240, 200), (120, 240, 200, 380)]


def test_a_small_figure_near_a_big_one_stays_its_own():
    # a child 30 px beside a seated adult whose box overlaps the child's: separate masks, separate figures
    mask = blob_mask((400, 400), [(40, 40, 260, 360), (290, 250, 330, 360)])
    mask[200:360, 200:260] = 0                                      # the adult's box is not all mask
    assert sorted(f.bbox for f in find_figures(mask)) == [(40, 40, 260, 360), (290, 250, 330, 360)]


def test_similar_sized_neighbours_stay_separate():
    a, b = Figure((0, 0, 100, 200), 15000), Figure((130, 0, 230, 200), 14000)
    assert not same_figure(a, b)
    legs = Figure((10, 210, 90, 300), 5000)
    assert same_figure(a, legs, bridged=True)                       # legs below, within the width, text between
    assert not same_figure(a, legs)                                  # ... and nothing between: another figure
    assert same_figure(a, Figure((102, 80, 120, 100), 300))         # a hand next to it


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


def figure_shape(shape=(200, 200)):
    """A stick-figure-like mask: a round head over a body with two legs (far from a rectangle)."""
    import cv2

    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, (100, 40), 20, 255, -1)
    cv2.rectangle(mask, (85, 60), (115, 120), 255, -1)
    cv2.line(mask, (90, 120), (70, 180), 255, 10)
    cv2.line(mask, (110, 120), (130, 180), 255, 10)
    cv2.line(mask, (85, 70), (55, 110), 255, 8)
    return mask


def test_figures_are_kept_and_rectangles_text_boxes_and_lines_are_rejected_with_reasons():
    from fitad.prep.crop import not_a_figure

    person = figure_shape()
    assert not_a_figure(find_figures(person)[0], person, np.zeros_like(person)) is None
    building = blob_mask((200, 200), [(60, 20, 140, 190)])
    assert "rectangle" in not_a_figure(find_figures(building)[0], building, None)
    tilted = np.zeros((200, 200), np.uint8)
    import cv2
    cv2.fillPoly(tilted, [np.array([[40, 100], [100, 40], [160, 100], [100, 160]], np.int32)], 255)
    assert "rectangle" in not_a_figure(find_figures(tilted)[0], tilted, None)       # rotated rectangles too
    narration = person.copy()
    text = np.zeros_like(person)
    text[20:120, 60:140] = 255                                                      # most of its box was lettering
    assert "text" in not_a_figure(find_figures(narration)[0], narration, text)
    line = blob_mask((200, 200), [(10, 100, 190, 112)])
    assert "line" in not_a_figure(find_figures(line)[0], line, None)


def test_select_figures_records_why_each_subject_was_left_out():
    from fitad.prep.run import select_figures

    mask = np.maximum(figure_shape((200, 400)), blob_mask((200, 400), [(250, 30, 330, 190)]))
    kept, rejected = select_figures(find_figures(mask), 48, mask, np.zeros_like(mask))
    assert [f.bbox[0] < 200 for f in kept] == [True]
    assert len(rejected) == 1 and rejected[0].startswith("subject at [250, 30, 330, 190] is not a figure: a plain rectangle")


def test_cut_sides_names_the_edges_a_figure_touches():
    from fitad.prep.crop import cut_sides

    assert cut_sides((10, 20, 90, 100), 100, 100) == ["bottom"]
    assert cut_sides((0, 0, 100, 50), 100, 100) == ["top", "left", "right"]
    assert cut_sides((10, 10, 90, 90), 100, 100) == []


def test_a_balloon_laid_across_a_figure_joins_the_pieces_above_and_below_it():
    import cv2

    from fitad.prep.crop import balloon_regions

    rgb = np.full((400, 400, 3), 245, np.uint8)
    cv2.ellipse(rgb, (200, 200), (150, 30), 0, 0, 360, (20, 20, 20), 3)          # an outlined balloon
    text = np.zeros((400, 400), np.uint8)
    text[190:210, 150:250] = 255                                                # its (removed) lettering
    balloons = balloon_regions(rgb, text)
    assert balloons[200, 200] > 0 and balloons[5, 5] == 0 and balloons[200, 20] == 0
    # a figure's head and shoulders above the balloon, its waist and legs below, shifted sideways
    mask = blob_mask((400, 400), [(150, 40, 230, 168), (180, 233, 260, 390)])
    joined = find_figures(mask, text_mask=None, balloons=balloons)
    assert [f.bbox for f in joined] == [(150, 40, 260, 390)]
    # the same two blobs with no balloon between them are two subjects
    assert len(find_figures(mask)) == 2
    # two figures side by side under one balloon are not joined by it
    side = blob_mask((400, 400), [(60, 250, 140, 390), (260, 250, 340, 390)])
    assert len(find_figures(side, balloons=balloons)) == 2


def test_across_a_balloon_feet_join_their_figure_but_a_neighbours_head_does_not():
    import cv2

    from fitad.prep.crop import balloon_regions

    rgb = np.full((400, 400, 3), 245, np.uint8)
    cv2.ellipse(rgb, (200, 240), (150, 40), 0, 0, 360, (20, 20, 20), 3)          # a wide balloon, y 200-280
    text = np.zeros((400, 400), np.uint8)
    text[230:250, 150:250] = 255
    balloons = balloon_regions(rgb, text)
    # a sitting figure: body above the balloon on the right, its feet below it further left (no shared width)
    body = (220, 60, 300, 204)
    feet = (150, 279, 190, 300)
    joined = find_figures(blob_mask((400, 400), [body, feet]), balloons=balloons)
    assert [f.bbox for f in joined] == [(150, 60, 300, 300)]
    # a neighbour's head above the balloon beside a figure that stands through it: as big as a quarter of that
    # figure or more, not over it, so not joined
    standing = (240, 120, 300, 380)
    head = (120, 130, 190, 206)
    kept_apart = find_figures(blob_mask((400, 400), [standing, head]), balloons=balloons)
    assert sorted(f.bbox for f in kept_apart) == [head, standing]
    # a small part beside the figure whose way to it runs outside the balloon is not joined either
    hand = (120, 110, 150, 140)
    assert len(find_figures(blob_mask((400, 400), [body, hand]), balloons=balloons)) == 2

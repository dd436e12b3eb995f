"""Materials of a figure's label map: each pixel of a drawn figure holds one of these (0 = empty)."""

OUTLINE, SKIN, HAIR, TOP, BOTTOM, SHOES, SHINE, ACCENT = range(1, 9)

"""A second synthetic comic-panel generator, independent of :mod:`fitad.synth`, with exact ground truth.

It measures the data-preparation stage (OCR text removal, subject cropping) on panels it was not
tuned on: other backgrounds (line-art cities, focus lines, rooms, skies, screentone), skeleton
figures drawn as outlined strokes, balloons that cross a figure, captions, vertical Korean columns
and rotated sound effects, in other fonts. The ``holdout`` split has its own seed range and fonts
the ``dev`` split never uses.

    from fitad.synth_styles import render_panel, synthesize_styles, available_fonts
"""

from fitad.synth_styles.fonts import available_fonts
from fitad.synth_styles.panel import StyledPanel, render_panel
from fitad.synth_styles.writer import HOLDOUT_SEED_OFFSET, panel_seed, synthesize_styles

__all__ = ["HOLDOUT_SEED_OFFSET", "StyledPanel", "available_fonts", "panel_seed", "render_panel",
           "synthesize_styles"]

"""Pose skeletons: joint positions in body-height units.

x grows to the right, y grows downward, the ground is y = 0 and a standing figure's crown is near
y = -1. ``l_``/``r_`` are the figure's screen-left and screen-right limbs (a figure can be mirrored).
Poses are jittered per figure so no two figures share exact joint angles.
"""

from __future__ import annotations

import numpy as np

JOINTS = ("head", "neck", "l_sh", "r_sh", "l_el", "r_el", "l_hand", "r_hand",
          "pelvis", "l_hip", "r_hip", "l_knee", "r_knee", "l_foot", "r_foot")

_STANDING = {
    "head": (0.0, -0.925), "neck": (0.0, -0.835), "l_sh": (-0.11, -0.81), "r_sh": (0.11, -0.81),
    "l_el": (-0.15, -0.645), "r_el": (0.15, -0.645), "l_hand": (-0.165, -0.485), "r_hand": (0.165, -0.485),
    "pelvis": (0.0, -0.52), "l_hip": (-0.065, -0.5), "r_hip": (0.065, -0.5),
    "l_knee": (-0.07, -0.27), "r_knee": (0.07, -0.27), "l_foot": (-0.075, -0.035), "r_foot": (0.075, -0.035),
}


def _pose(**changes: tuple[float, float]) -> dict[str, tuple[float, float]]:
    joints = dict(_STANDING)
    joints.update(changes)
    return joints


POSES: dict[str, dict[str, tuple[float, float]]] = {
    "standing": _pose(),
    "walking": _pose(l_el=(-0.16, -0.65), l_hand=(-0.22, -0.51), r_el=(0.12, -0.65), r_hand=(0.06, -0.5),
                     l_knee=(-0.12, -0.28), l_foot=(-0.19, -0.04), r_knee=(0.09, -0.26), r_foot=(0.15, -0.05)),
    "arms_up": _pose(l_el=(-0.21, -0.96), l_hand=(-0.19, -1.12), r_el=(0.21, -0.96), r_hand=(0.19, -1.12),
                     l_foot=(-0.12, -0.035), r_foot=(0.12, -0.035), l_knee=(-0.09, -0.27), r_knee=(0.09, -0.27)),
    "running": _pose(head=(0.1, -0.885), neck=(0.075, -0.8), l_sh=(-0.03, -0.775), r_sh=(0.16, -0.775),
                     l_el=(-0.13, -0.66), l_hand=(-0.07, -0.56), r_el=(0.25, -0.68), r_hand=(0.33, -0.8),
                     pelvis=(0.01, -0.49), l_hip=(-0.045, -0.48), r_hip=(0.065, -0.48),
                     r_knee=(0.2, -0.36), r_foot=(0.17, -0.15), l_knee=(-0.1, -0.25), l_foot=(-0.26, -0.1)),
    # Seated on the ground, knees drawn up and turned to the right.
    "sitting": _pose(head=(-0.04, -0.625), neck=(-0.04, -0.535), l_sh=(-0.15, -0.51), r_sh=(0.07, -0.51),
                     l_el=(-0.16, -0.35), r_el=(0.14, -0.38), l_hand=(-0.1, -0.24), r_hand=(0.22, -0.3),
                     pelvis=(-0.03, -0.16), l_hip=(-0.09, -0.15), r_hip=(0.03, -0.15),
                     l_knee=(0.16, -0.33), r_knee=(0.22, -0.3), l_foot=(0.28, -0.035), r_foot=(0.33, -0.035)),
    # Head and shoulders seen close: drawn like standing, scaled up and cut by the frame.
    "bust": _pose(l_el=(-0.17, -0.64), r_el=(0.17, -0.64), l_hand=(-0.18, -0.47), r_hand=(0.18, -0.47)),
}
POSE_NAMES = tuple(POSES)


def jittered_pose(name: str, rng: np.random.Generator, amount: float = 0.012) -> dict[str, np.ndarray]:
    """The joints of pose ``name`` with a little noise, as arrays (x, y) in body-height units."""
    if name not in POSES:
        raise ValueError(f"unknown pose {name!r}; expected one of {', '.join(POSE_NAMES)}")
    noisy: dict[str, np.ndarray] = {}
    for joint in JOINTS:
        x, y = POSES[name][joint]
        wiggle = 0.0 if joint in ("head", "neck", "pelvis") else amount
        noisy[joint] = np.array([x, y], np.float64) + rng.uniform(-wiggle, wiggle, size=2)
    return noisy

"""``synthscenes``: a procedural indoor dense benchmark, ray-cast on the fly, for CPU work.

Each sample is a room seen by a pinhole camera: floor, walls and ceiling planes plus random
boxes (rotated about the vertical), spheres (resting or floating) and vertical cylinders. Every
pixel's ray is intersected with every primitive at once (vectorised numpy over the
``H·W`` rays, no loop over pixels) and the nearest hit gives

* ``segmentation``: class of the hit surface, :data:`CLASSES` = floor, wall, ceiling, box,
  sphere, cylinder (6 classes); −1 (ignore) on a one-pixel line where the class changes
  (like the unlabelled boundaries of NYUv2), when ``holes`` is on;
* ``depth``: the true z-depth (distance along the optical axis, metres, as a Kinect / NYUv2);
* ``normal``: the true unit surface normal in the camera frame (OpenCV axes: x right, y down,
  z forward), facing the camera — geometrically consistent with the depth (the tests
  back-project the depth and compare finite-difference normals);
* an RGB image: textured albedo (checkered floor, striped walls, crate-patterned boxes,
  banded cylinders, glossy spheres), Lambert + Blinn-Phong shading from a point light, mild
  distance fading and pixel noise, so that all three tasks are learnable from the image.

With ``holes`` on (default), pixels seen at a grazing angle (``|cos| < 0.087``, > 85°) get
depth 0 and normal 0 (invalid), like depth-sensor dropouts, so masking is exercised.

Determinism: sample ``i`` of split ``s`` is a pure function of ``(seed, s, i)`` (numpy
``SeedSequence``); train / val / test use different streams. Samples are generated lazily on
first access and kept in memory (``cache=True``; call ``materialize()`` before starting
``DataLoader`` workers, which would otherwise each fill their own cache).

Preset ``synthscenes``: 48×64 images, 2048 / 256 / 512 train / val / test samples from data
seed 0 (``BuildOptions.extra``: ``n_train``, ``n_val``, ``n_test``, ``size``, ``data_seed``,
``augment``, ``views``: camera views per room, default 1, i.e. every sample its own room), the small dilated CNN of :mod:`repmtl.nets.small_dense` (``encoder="small"``,
default) or a dilated ResNet-18 with small-rate ASPP heads (``"resnet18"``); Adam 1e-3,
batch 32, 20 epochs. Generation costs a few milliseconds per sample on one CPU core.

One module per job: :mod:`~repmtl.data.synthscenes.scene` (camera, scene sampling),
:mod:`~repmtl.data.synthscenes.render` (ray casting, shading, :func:`generate`),
:mod:`~repmtl.data.synthscenes.dataset` (:class:`SynthScenes`, :func:`synthscenes_splits`),
:mod:`~repmtl.data.synthscenes.preset` (the registered benchmark). This package exposes their
public names, and importing it registers the preset.
"""

from __future__ import annotations

from repmtl.data.synthscenes.dataset import (
    IMAGE_SIZE,
    SIZES,
    TASK_KINDS,
    TASK_OUTPUTS,
    SynthScenes,
    synthscenes_splits,
)
from repmtl.data.synthscenes.preset import SYNTHSCENES
from repmtl.data.synthscenes.render import GRAZING_COS, SPLIT_CODES, generate, render
from repmtl.data.synthscenes.scene import (
    BOX,
    CEILING,
    CLASSES,
    CYLINDER,
    FLOOR,
    SPHERE,
    WALL,
    Camera,
    Scene,
    sample_scene,
    sample_view,
)

__all__ = [
    "BOX",
    "CEILING",
    "CLASSES",
    "CYLINDER",
    "FLOOR",
    "GRAZING_COS",
    "IMAGE_SIZE",
    "SIZES",
    "SPHERE",
    "SPLIT_CODES",
    "SYNTHSCENES",
    "TASK_KINDS",
    "TASK_OUTPUTS",
    "WALL",
    "Camera",
    "Scene",
    "SynthScenes",
    "generate",
    "render",
    "sample_scene",
    "sample_view",
    "synthscenes_splits",
]

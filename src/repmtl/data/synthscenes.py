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
``augment``), the small dilated CNN of :mod:`repmtl.nets.small_dense` (``encoder="small"``,
default) or a dilated ResNet-18 with small-rate ASPP heads (``"resnet18"``); Adam 1e-3,
batch 32, 20 epochs. Generation costs a few milliseconds per sample on one CPU core.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from repmtl.benchmarks import (
    Benchmark,
    BuildOptions,
    Splits,
    TrainDefaults,
    register_benchmark,
)
from repmtl.model import MultiTaskModel
from repmtl.tasks import Task

CLASSES = ("floor", "wall", "ceiling", "box", "sphere", "cylinder")
FLOOR, WALL, CEILING, BOX, SPHERE, CYLINDER = range(6)
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_EPS = 1e-6
GRAZING_COS = math.cos(math.radians(85.0))


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics; pixel ``(u, v)``'s centre is at ``(u + 0.5, v + 0.5)``."""

    height: int
    width: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, height: int, width: int, hfov_degrees: float = 60.0) -> Camera:
        f = (width / 2) / math.tan(math.radians(hfov_degrees) / 2)
        return cls(height, width, f, f, width / 2, height / 2)

    def rays(self) -> np.ndarray:
        """``H×W×3`` camera-frame directions with z = 1 (so the ray parameter is the z-depth)."""
        u = (np.arange(self.width) + 0.5 - self.cx) / self.fx
        v = (np.arange(self.height) + 0.5 - self.cy) / self.fy
        uu, vv = np.meshgrid(u, v)
        return np.stack([uu, vv, np.ones_like(uu)], axis=-1)

    def backproject(self, depth: np.ndarray) -> np.ndarray:
        """``H×W`` z-depth -> ``H×W×3`` camera-frame points."""
        return self.rays() * depth[..., None]


@dataclass
class Scene:
    """Geometry and materials of one room (world frame: x right, y up, z forward; floor y = 0)."""

    camera_position: np.ndarray
    rotation: np.ndarray  # camera (x right, y up, z forward) -> world
    room: tuple[float, float, float, float, float, float]  # x_lo, x_hi, y_lo(0), y_hi, z_lo, z_hi
    boxes: list[dict] = field(default_factory=list)
    spheres: list[dict] = field(default_factory=list)
    cylinders: list[dict] = field(default_factory=list)
    light: np.ndarray = field(default_factory=lambda: np.zeros(3))
    floor_colors: tuple[np.ndarray, np.ndarray] = (np.zeros(3), np.zeros(3))
    floor_tile: float = 0.5
    wall_color: np.ndarray = field(default_factory=lambda: np.ones(3))
    wall_period: float = 0.4
    ceiling_color: np.ndarray = field(default_factory=lambda: np.ones(3))


def _rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _hsv(rng: np.random.Generator, s: tuple[float, float], v: tuple[float, float]) -> np.ndarray:
    h, sat, val = rng.uniform(0, 1), rng.uniform(*s), rng.uniform(*v)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return val - val * sat * np.clip(np.minimum(k, 4 - k), 0, 1)


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw a random room, camera, objects, materials and light."""
    room_h = rng.uniform(2.4, 3.2)
    cam_h = rng.uniform(1.0, 1.7)
    x_lo, x_hi = -rng.uniform(1.6, 3.0), rng.uniform(1.6, 3.0)
    z_hi = rng.uniform(4.0, 8.0)
    room = (x_lo, x_hi, 0.0, room_h, -0.5, z_hi)
    pitch = math.radians(rng.uniform(-25, -5))  # looking down
    yaw = math.radians(rng.uniform(-20, 20))
    scene = Scene(
        camera_position=np.array([0.0, cam_h, 0.0]),
        rotation=_rot_y(yaw) @ _rot_x(-pitch),
        room=room,
        light=np.array([rng.uniform(x_lo + 0.3, x_hi - 0.3), room_h - 0.15, rng.uniform(0.5, z_hi / 2)]),
        floor_colors=(_hsv(rng, (0.3, 0.6), (0.45, 0.7)), _hsv(rng, (0.3, 0.6), (0.25, 0.45))),
        floor_tile=rng.uniform(0.35, 0.8),
        wall_color=_hsv(rng, (0.05, 0.3), (0.75, 0.95)),
        wall_period=rng.uniform(0.25, 0.6),
        ceiling_color=_hsv(rng, (0.0, 0.08), (0.9, 1.0)),
    )

    def place(margin: float) -> tuple[float, float]:
        return rng.uniform(x_lo + margin, x_hi - margin), rng.uniform(1.5, z_hi - margin)

    for _ in range(rng.integers(1, 5)):
        size = np.array([rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.5), rng.uniform(0.3, 1.2)])
        x, z = place(0.3)
        scene.boxes.append(
            dict(center=np.array([x, size[1] / 2, z]), half=size / 2, yaw=rng.uniform(0, math.pi / 2),
                 color=_hsv(rng, (0.5, 0.9), (0.55, 0.95)), period=rng.uniform(0.15, 0.35))
        )
    for _ in range(rng.integers(1, 4)):
        r = rng.uniform(0.2, 0.55)
        x, z = place(r)
        y = r if rng.uniform() < 0.7 else rng.uniform(r + 0.2, room_h - r - 0.1)
        scene.spheres.append(dict(center=np.array([x, y, z]), radius=r, color=_hsv(rng, (0.5, 0.9), (0.55, 0.95))))
    for _ in range(rng.integers(0, 3)):
        r = rng.uniform(0.15, 0.45)
        x, z = place(r)
        scene.cylinders.append(
            dict(center=np.array([x, 0.0, z]), radius=r, height=rng.uniform(0.4, 1.6),
                 color=_hsv(rng, (0.5, 0.9), (0.55, 0.95)), period=rng.uniform(0.1, 0.25))
        )
    return scene


class _Hits:
    """Running nearest hit per ray."""

    def __init__(self, n: int) -> None:
        self.t = np.full(n, np.inf)
        self.instance = np.full(n, -1, dtype=np.int64)
        self.face = np.zeros(n, dtype=np.int64)
        self.normal = np.zeros((n, 3))

    def offer(self, t: np.ndarray, hit: np.ndarray, instance: int, normal: np.ndarray, face: np.ndarray | int = 0) -> None:
        closer = hit & (t < self.t)
        self.t = np.where(closer, t, self.t)
        self.instance = np.where(closer, instance, self.instance)
        self.face = np.where(closer, face, self.face)
        self.normal = np.where(closer[:, None], normal, self.normal)


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-12, np.where(d < 0, -1e-12, 1e-12), d)


def render(scene: Scene, camera: Camera, rng: np.random.Generator | None = None, holes: bool = True) -> dict[str, np.ndarray]:
    """Ray-cast ``scene``. Returns ``image`` (H×W×3 in [0, 1]), ``label`` (H×W int64),
    ``depth`` (H×W), ``normal`` (H×W×3, camera frame), ``instance`` (H×W primitive id: the 6
    room planes, then boxes, spheres, cylinders), ``surface`` (H×W id of the smooth surface
    patch: ``8·instance + face``, a box face or a cylinder's side / top) and ``valid`` (H×W,
    depth and normal valid)."""
    H, W = camera.height, camera.width
    d_cam = camera.rays().reshape(-1, 3)
    # OpenCV camera axes (y down) -> camera axes with y up -> world
    flip_y = np.array([1.0, -1.0, 1.0])
    d = (d_cam * flip_y) @ scene.rotation.T
    o = scene.camera_position
    n = d.shape[0]
    hits = _Hits(n)
    classes: list[int] = []

    x_lo, x_hi, y_lo, y_hi, z_lo, z_hi = scene.room
    planes = [
        (1, y_lo, (0, 1, 0), FLOOR), (1, y_hi, (0, -1, 0), CEILING),
        (0, x_lo, (1, 0, 0), WALL), (0, x_hi, (-1, 0, 0), WALL),
        (2, z_lo, (0, 0, 1), WALL), (2, z_hi, (0, 0, -1), WALL),
    ]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for axis, value, normal, cls in planes:
            t = (value - o[axis]) / _safe(d[:, axis])
            hits.offer(t, t > _EPS, len(classes), np.broadcast_to(np.array(normal, float), (n, 3)))
            classes.append(cls)

        for box in scene.boxes:
            rot = _rot_y(box["yaw"])  # local -> world
            q = (o - box["center"]) @ rot  # world -> local (rot.T applied to row vectors)
            e = _safe(d @ rot)
            t1, t2 = (-box["half"] - q) / e, (box["half"] - q) / e
            tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
            near, far = tmin.max(axis=1), tmax.min(axis=1)
            axis = tmin.argmax(axis=1)
            local = np.zeros((n, 3))
            local[np.arange(n), axis] = -np.sign(e[np.arange(n), axis])
            face = 2 * axis + (local[np.arange(n), axis] > 0)
            hits.offer(near, (near <= far) & (near > _EPS), len(classes), local @ rot.T, face)
            classes.append(BOX)

        for sphere in scene.spheres:
            oc = o - sphere["center"]
            a = (d * d).sum(1)
            b = 2 * d @ oc
            c = oc @ oc - sphere["radius"] ** 2
            disc = b * b - 4 * a * c
            t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
            normal = (o + t[:, None] * d - sphere["center"]) / sphere["radius"]
            hits.offer(t, (disc >= 0) & (t > _EPS), len(classes), normal)
            classes.append(SPHERE)

        for cyl in scene.cylinders:
            cx, cz, r, h = cyl["center"][0], cyl["center"][2], cyl["radius"], cyl["height"]
            ox, oz = o[0] - cx, o[2] - cz
            a = d[:, 0] ** 2 + d[:, 2] ** 2
            b = 2 * (d[:, 0] * ox + d[:, 2] * oz)
            c = ox * ox + oz * oz - r * r
            disc = b * b - 4 * a * c
            t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * np.maximum(a, 1e-300))
            y_side = o[1] + t_side * d[:, 1]
            side = (disc >= 0) & (a > 1e-12) & (t_side > _EPS) & (y_side >= 0) & (y_side <= h)
            p_side = o + t_side[:, None] * d
            n_side = np.stack([(p_side[:, 0] - cx) / r, np.zeros(n), (p_side[:, 2] - cz) / r], axis=1)
            t_top = (h - o[1]) / _safe(d[:, 1])
            p_top = o + t_top[:, None] * d
            top = (t_top > _EPS) & ((p_top[:, 0] - cx) ** 2 + (p_top[:, 2] - cz) ** 2 <= r * r)
            use_top = top & (~side | (t_top < t_side))
            t = np.where(use_top, t_top, t_side)
            normal = np.where(use_top[:, None], np.array([0.0, 1.0, 0.0]), n_side)
            hits.offer(t, side | top, len(classes), normal, use_top.astype(np.int64))
            classes.append(CYLINDER)

    if not np.isfinite(hits.t).all():  # the room is closed: every ray must hit something
        raise RuntimeError("synthscenes: a ray escaped the room (generator bug)")
    depth = hits.t
    points = o + depth[:, None] * d
    n_world = hits.normal / np.linalg.norm(hits.normal, axis=1, keepdims=True)
    facing = (n_world * d).sum(1) > 0
    n_world = np.where(facing[:, None], -n_world, n_world)
    normal_cam = (n_world @ scene.rotation) * flip_y  # world -> camera (y up) -> OpenCV
    label = np.asarray(classes)[hits.instance]

    image = _shade(scene, points, n_world, d, depth, hits.instance, label, classes)
    if rng is not None:
        image = image + rng.normal(0, 0.01, image.shape)
    image = np.clip(image, 0, 1)

    cos_view = np.abs((n_world * d).sum(1)) / np.linalg.norm(d, axis=1)
    valid = cos_view >= GRAZING_COS if holes else np.ones(n, bool)
    label = label.reshape(H, W)
    if holes:
        edge = np.zeros((H, W), bool)
        edge[:, :-1] |= label[:, :-1] != label[:, 1:]
        edge[:-1, :] |= label[:-1, :] != label[1:, :]
        label = np.where(edge, -1, label)
    return {
        "image": image.reshape(H, W, 3),
        "label": label.astype(np.int64),
        "depth": np.where(valid, depth, 0.0).reshape(H, W),
        "normal": np.where(valid[:, None], normal_cam, 0.0).reshape(H, W, 3),
        "instance": hits.instance.reshape(H, W),
        "surface": (8 * hits.instance + hits.face).reshape(H, W),
        "valid": valid.reshape(H, W),
    }


def _shade(scene, points, normals, d, depth, instance, label, classes) -> np.ndarray:
    n = points.shape[0]
    albedo = np.zeros((n, 3))
    gloss = np.zeros(n)
    px, py, pz = points[:, 0], points[:, 1], points[:, 2]
    checker = (np.floor(px / scene.floor_tile) + np.floor(pz / scene.floor_tile)) % 2
    albedo = np.where((label == FLOOR)[:, None], np.where(checker[:, None] > 0, *scene.floor_colors), albedo)
    along = np.where(np.abs(normals[:, 0]) > 0.5, pz, px)  # coordinate along the wall
    stripes = 0.88 + 0.12 * (np.sin(2 * np.pi * along / scene.wall_period) > 0)
    albedo = np.where((label == WALL)[:, None], scene.wall_color * stripes[:, None], albedo)
    albedo = np.where((label == CEILING)[:, None], scene.ceiling_color, albedo)
    first = 6
    for k, box in enumerate(scene.boxes):
        q = (points - box["center"]) @ _rot_y(box["yaw"])
        pattern = ((np.floor(q / box["period"]).sum(1)) % 2)[:, None]
        albedo = np.where((instance == first + k)[:, None], box["color"] * (0.8 + 0.2 * pattern), albedo)
    first += len(scene.boxes)
    for k, sphere in enumerate(scene.spheres):
        mask = instance == first + k
        albedo = np.where(mask[:, None], sphere["color"], albedo)
        gloss = np.where(mask, 1.0, gloss)
    first += len(scene.spheres)
    for k, cyl in enumerate(scene.cylinders):
        bands = 0.75 + 0.25 * ((np.floor(py / cyl["period"]) % 2)[:, None])
        albedo = np.where((instance == first + k)[:, None], cyl["color"] * bands, albedo)

    to_light = scene.light - points
    dist2 = (to_light * to_light).sum(1)
    l_hat = to_light / np.sqrt(dist2)[:, None]
    diffuse = np.clip((normals * l_hat).sum(1), 0, None) * (6.0 / (3.0 + dist2))
    view = -d / np.linalg.norm(d, axis=1, keepdims=True)
    half = l_hat + view
    half /= np.linalg.norm(half, axis=1, keepdims=True)
    specular = gloss * np.clip((normals * half).sum(1), 0, None) ** 40
    shade = (0.3 + 0.7 * np.clip(diffuse, 0, 1.2)) * np.exp(-0.06 * depth)
    return albedo * shade[:, None] + 0.6 * specular[:, None]


def generate(seed: int, split: str, index: int, size: tuple[int, int] = (48, 64), holes: bool = True) -> dict[str, np.ndarray]:
    """Sample ``index`` of ``split`` for ``seed`` (a pure function of its arguments)."""
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; choose from {list(SPLIT_CODES)}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_CODES[split], int(index)]))
    camera = Camera.from_fov(*size)
    return render(sample_scene(rng), camera, rng, holes=holes)


TASK_OUTPUTS = {"segmentation": len(CLASSES), "depth": 1, "normal": 3}
TASK_KINDS = {"segmentation": "label", "depth": "depth", "normal": "normal"}


class SynthScenes(Dataset):
    """One split of synthscenes: ``(image 3×H×W, {task: target})`` like the NYUv2 loader.

    Args:
        split: ``"train" | "val" | "test"`` (independent random streams).
        length: number of samples.
        seed: dataset seed (not the run's seed: every run sees the same data).
        size: ``(H, W)``; multiples of 8 fit every encoder here.
        tasks: subset of ``segmentation``, ``depth``, ``normal``.
        cache: keep generated samples in memory (≈ 60 KB each at 48×64).
        augment: optional ``(image, targets) -> (image, targets)`` (e.g. ``DenseAugment``).
    """

    def __init__(
        self,
        split: str,
        length: int,
        seed: int = 0,
        size: tuple[int, int] = (48, 64),
        tasks: Sequence[str] = ("segmentation", "depth", "normal"),
        holes: bool = True,
        cache: bool = True,
        augment: Callable | None = None,
    ) -> None:
        if split not in SPLIT_CODES:
            raise ValueError(f"unknown split {split!r}; choose from {list(SPLIT_CODES)}")
        unknown = [t for t in tasks if t not in TASK_OUTPUTS]
        if unknown:
            raise ValueError(f"unknown synthscenes tasks {unknown}; choose from {list(TASK_OUTPUTS)}")
        self.split, self.length, self.seed = split, int(length), int(seed)
        self.size = (int(size[0]), int(size[1]))
        self.tasks, self.holes, self.augment = tuple(tasks), holes, augment
        self._cache: dict[int, tuple[torch.Tensor, dict[str, torch.Tensor]]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        s = generate(self.seed, self.split, index, self.size, self.holes)
        image = torch.from_numpy(s["image"].astype(np.float32)).permute(2, 0, 1).contiguous()
        all_targets = {
            "segmentation": torch.from_numpy(s["label"]),
            "depth": torch.from_numpy(s["depth"].astype(np.float32))[None],
            "normal": torch.from_numpy(s["normal"].astype(np.float32)).permute(2, 0, 1).contiguous(),
        }
        sample = (image, {t: all_targets[t] for t in self.tasks})
        if self._cache is not None:
            self._cache[index] = sample
        return sample

    def materialize(self) -> SynthScenes:
        """Generate every sample now. Useful before ``DataLoader`` workers start: each worker
        otherwise fills its own copy of the cache (and loses it when the worker exits)."""
        for index in range(self.length):
            self.load(index)
        return self

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image, targets = self.load(index)
        if self.augment is not None:
            image, targets = self.augment(image, targets)
        return image, targets


# ----------------------------------------------------------------------------- preset

#: default split sizes and image size of the preset
SIZES = {"train": 2048, "val": 256, "test": 512}
IMAGE_SIZE = (48, 64)


def synthscenes_splits(
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    size: tuple[int, int] = IMAGE_SIZE,
    tasks: Sequence[str] = tuple(TASK_OUTPUTS),
    augment: bool = False,
    holes: bool = True,
) -> Splits:
    """Fixed train / val / test sets from ``seed`` (the dataset seed, not the run's)."""
    from repmtl.data.transforms import DenseAugment

    sizes = {**SIZES, **(sizes or {})}
    aug = DenseAugment({t: TASK_KINDS[t] for t in tasks}) if augment else None
    make = lambda split, a=None: SynthScenes(split, sizes[split], seed, size, tasks, holes, augment=a)  # noqa: E731
    return Splits(train=make("train", aug), val=make("val"), test=make("test"))


def _tasks(options: BuildOptions) -> list[Task]:
    from repmtl.data._dense import dense_tasks

    return dense_tasks(tuple(TASK_OUTPUTS), len(CLASSES))


def _splits(options: BuildOptions) -> Splits:
    from repmtl.data._dense import parse_extra

    extra = options.extra
    sizes = {k: int(parse_extra(extra, f"n_{k}", v)) for k, v in SIZES.items()}
    return synthscenes_splits(
        seed=int(parse_extra(extra, "data_seed", 0)),
        sizes=sizes,
        size=tuple(parse_extra(extra, "size", IMAGE_SIZE)),
        augment=bool(parse_extra(extra, "augment", False)),
    )


def _model(options: BuildOptions, tasks: list[Task]) -> MultiTaskModel:
    outputs = {t.name: TASK_OUTPUTS[t.name] for t in tasks}
    encoder = options.encoder or "small"
    if encoder == "small":
        from repmtl.nets.small_dense import build_small_dense

        return build_small_dense(outputs)
    from repmtl.nets.deeplab import build_deeplab

    # a 48×64 input gives a 6×8 map at stride 8: small atrous rates
    return build_deeplab(outputs, encoder=encoder, pretrained=options.pretrained, rates=(1, 2, 3))


SYNTHSCENES = register_benchmark(
    Benchmark(
        name="synthscenes",
        description="Procedural rooms 48×64 (ray-cast, no data files): 6-class segmentation, depth, normals; CPU-sized",
        tasks=_tasks,
        splits=_splits,
        model=_model,
        defaults=TrainDefaults(epochs=20, batch_size=32, lr=1e-3, weight_decay=0.0, optimizer="adam", eval_batch_size=128),
        encoders=("small", "resnet18"),
        options=("n_train", "n_val", "n_test", "size", "data_seed", "augment"),
    )
)

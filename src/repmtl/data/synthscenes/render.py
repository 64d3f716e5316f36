"""synthscenes rendering: ray casting of a :class:`~repmtl.data.synthscenes.scene.Scene`
(every pixel's ray against every primitive at once, vectorised numpy over the ``H·W`` rays),
shading of the image, and :func:`generate`, sample ``i`` of a split as a pure function of
``(seed, split, i)``."""

from __future__ import annotations

import math

import numpy as np

from repmtl.data.synthscenes.scene import (
    BOX,
    CEILING,
    CYLINDER,
    FLOOR,
    SPHERE,
    WALL,
    Camera,
    Scene,
    rot_y,
    sample_scene,
    sample_view,
)

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_EPS = 1e-6
GRAZING_COS = math.cos(math.radians(85.0))


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
            rot = rot_y(box["yaw"])  # local -> world
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

    image = _shade(scene, points, n_world, d, depth, hits.instance, label)
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


def _shade(scene: Scene, points: np.ndarray, normals: np.ndarray, d: np.ndarray, depth: np.ndarray,
           instance: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Textured albedo of each hit (per class; instances numbered as :func:`render` numbers them)
    under Lambert + Blinn-Phong shading from the scene's point light, faded with distance."""
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
        q = (points - box["center"]) @ rot_y(box["yaw"])
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


def generate(seed: int, split: str, index: int, size: tuple[int, int] = (48, 64), holes: bool = True,
             views: int = 1) -> dict[str, np.ndarray]:
    """Sample ``index`` of ``split`` for ``seed`` (a pure function of its arguments).

    With ``views = V`` samples come in groups of ``V`` views of one room: sample ``i`` is view
    ``i mod V`` of scene ``i // V``. View 0 is the scene's own camera (so it equals sample
    ``i // V`` of ``views = 1``); view ``v > 0`` moves the camera (:func:`sample_view`), drawn
    from the stream ``(seed, split, scene, v)``.
    """
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; choose from {list(SPLIT_CODES)}")
    if views < 1:
        raise ValueError(f"views must be ≥ 1, got {views}")
    scene_index, view = divmod(int(index), int(views))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_CODES[split], scene_index]))
    scene = sample_scene(rng)
    if view:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_CODES[split], scene_index, view]))
        scene = sample_view(scene, rng)
    camera = Camera.from_fov(*size)
    return render(scene, camera, rng, holes=holes)

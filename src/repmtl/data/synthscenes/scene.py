"""synthscenes scenes: the pinhole :class:`Camera`, the :class:`Scene` of one room (geometry
and materials) and :func:`sample_scene`, which draws one from a random generator.

World frame: x right, y up, z forward; the floor is ``y = 0``. Surface classes
(:data:`CLASSES`): floor, wall, ceiling, box, sphere, cylinder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

CLASSES = ("floor", "wall", "ceiling", "box", "sphere", "cylinder")
FLOOR, WALL, CEILING, BOX, SPHERE, CYLINDER = range(6)


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


def rot_y(angle: float) -> np.ndarray:
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
        rotation=rot_y(yaw) @ _rot_x(-pitch),
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
            {"center": np.array([x, size[1] / 2, z]), "half": size / 2, "yaw": rng.uniform(0, math.pi / 2),
             "color": _hsv(rng, (0.5, 0.9), (0.55, 0.95)), "period": rng.uniform(0.15, 0.35)}
        )
    for _ in range(rng.integers(1, 4)):
        r = rng.uniform(0.2, 0.55)
        x, z = place(r)
        y = r if rng.uniform() < 0.7 else rng.uniform(r + 0.2, room_h - r - 0.1)
        scene.spheres.append({"center": np.array([x, y, z]), "radius": r, "color": _hsv(rng, (0.5, 0.9), (0.55, 0.95))})
    for _ in range(rng.integers(0, 3)):
        r = rng.uniform(0.15, 0.45)
        x, z = place(r)
        scene.cylinders.append(
            {"center": np.array([x, 0.0, z]), "radius": r, "height": rng.uniform(0.4, 1.6),
             "color": _hsv(rng, (0.5, 0.9), (0.55, 0.95)), "period": rng.uniform(0.1, 0.25)}
        )
    return scene


def sample_view(scene: Scene, rng: np.random.Generator) -> Scene:
    """The same room from another camera pose: height, pitch and yaw drawn as in
    :func:`sample_scene`, and the camera moved sideways within the middle half of the room and up
    to 0.6 m forward (objects stand 0.95 m or more ahead of the default position, so the camera
    stays in free space). Geometry, materials and light are ``scene``'s."""
    x_lo, x_hi, _, room_h, _, _ = scene.room
    cam_h = rng.uniform(1.0, min(1.7, room_h - 0.3))
    pitch = math.radians(rng.uniform(-25, -5))
    yaw = math.radians(rng.uniform(-20, 20))
    position = np.array([rng.uniform(x_lo / 2, x_hi / 2), cam_h, rng.uniform(0.0, 0.6)])
    return replace(scene, camera_position=position, rotation=rot_y(yaw) @ _rot_x(-pitch))

"""Synthetic road scenes with labels, deterministic by seed: the demo's data and tests' data.

A scene is a small 3-D street (straight or gently curved road, lanes, sidewalks, terrain,
buildings, trees, poles with signs and lights, walls, fences, cars, trucks, buses, people,
parked bicycles) seen by a pinhole camera 1.4 m above the road. The ground is shaded per
pixel in world coordinates, upright things are painted far to near, so labels are exact
and a moving camera gives a consistent driving sequence. Labels use Cityscapes train ids
(255 = void: the ego hood and anomalies); anomaly maps use 0 inlier, 1 anomaly, 255 ignore.
Anomalies come from `synthetic.anomalies` families and stand on the road. Each frame also
says where every visible obstacle stands in the vehicle frame (`SceneObstacle`), and
`World.calibration` gives the camera's K and pose as a vehicle's camera_info and
`camera_extrinsics` would, so ground projection is measured against the truth.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ood_perception.contract import IGNORE_LABEL
from ood_perception.errors import ConfigurationError
from ood_perception.synthetic.anomalies import AnomalyFamily, families, make_cutout

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN = 0, 1, 2, 3, 4, 5, 6, 7
VEGETATION, TERRAIN, SKY, PERSON, CAR, TRUCK, BUS, BICYCLE = 8, 9, 10, 11, 13, 14, 15, 18
VOID = IGNORE_LABEL
ANOMALY = 254  # internal label while painting; becomes VOID in `semantic`
NEAR = 1.0  # metres: nearer geometry is clipped
# Obstacles are placed no farther than where they look this many pixels tall.
MIN_ANOMALY_PX = 28.0


@dataclass(frozen=True)
class SceneConfig:
    """Image size and camera; the demo model is trained and evaluated at the defaults."""

    height: int = 224
    width: int = 448
    # Focal length in units of the image width (0.8: about 64 degrees horizontal field of view).
    focal: float = 0.8
    camera_height: float = 1.4
    # Horizon row as a fraction of the height, jittered by +-0.03 per world.
    horizon: float = 0.44
    # Draw the ego vehicle's bonnet at the bottom (void in every label).
    ego_hood: bool = True
    # Camera noise standard deviation in grey levels.
    noise: float = 3.0

    def __post_init__(self) -> None:
        if self.height < 32 or self.width < 32:
            raise ConfigurationError(f"scene size must be at least 32x32, got "
                                     f"{self.height}x{self.width}")


@dataclass(frozen=True)
class SceneObstacle:
    """Where one visible anomaly stands, in the vehicle frame of the rendering camera
    (REP 103 base_link on the road below the camera: x forward, y left; metres)."""

    index: int  # the anomaly's place in its world: the same object in every frame
    family: str
    distance: float  # x of its front face (it is a fronto-parallel cut-out)
    lateral: float  # y of its centre
    width: float
    bbox: tuple[int, int, int, int]  # visible pixels' box (x, y, width, height)
    pixels: int  # visible pixels


@dataclass(frozen=True)
class SceneFrame:
    """One rendered image with its labels (all HxW) and its obstacles' ground truth."""

    rgb: np.ndarray  # uint8 HxWx3
    semantic: np.ndarray  # uint8 Cityscapes train ids, 255 void
    anomaly: np.ndarray  # uint8 0 inlier, 1 anomaly, 255 ignore
    families: tuple[str, ...]  # anomaly families visible in the frame
    obstacles: tuple[SceneObstacle, ...] = ()


@dataclass(frozen=True)
class SceneCalibration:
    """The scene camera as a vehicle describes its cameras: camera_info's K (row-major,
    OpenCV pixel centres; no distortion) and `camera_extrinsics` [x, y, z, qx, qy, qz, qw]
    (base_link <- optical frame)."""

    k: tuple[float, ...]
    size: tuple[int, int]  # height, width
    extrinsics: tuple[float, ...]


# base_link <- optical frame for a level camera looking along x: optical z = x, x = -y, y = -z.
LEVEL_CAMERA_ROTATION = (-0.5, 0.5, -0.5, 0.5)


@dataclass(frozen=True)
class SceneCamera:
    """Pinhole camera at longitudinal position `z`; X right, Y up, Z forward (metres).

    Its image coordinates put pixel edges at integers (pixel (0, 0) spans 0..1), half a
    pixel from OpenCV's centres; `World.calibration` converts."""

    f: float
    cx: float
    horizon: float
    height: float
    curvature: float
    z: float = 0.0

    def x(self, X, Z):
        """Image column of lateral position X at depth Z (the road bends by curvature * Z^2)."""
        return self.cx + self.f * (X + self.curvature * Z * Z) / Z

    def y(self, Y, Z):
        return self.horizon + self.f * (self.height - Y) / Z


@dataclass
class Canvas:
    rgb: np.ndarray  # float32 HxWx3
    label: np.ndarray  # uint8 HxW

    def fill(self, points, colour, cls: int) -> None:
        pts = np.round(np.asarray(points, np.float64) * 16).astype(np.int32)
        cv2.fillPoly(self.rgb, [pts], tuple(float(c) for c in colour), cv2.LINE_8, 4)
        cv2.fillPoly(self.label, [pts], int(cls), cv2.LINE_8, 4)

    def ellipse(self, centre, axes, colour, cls: int) -> None:
        c = (int(round(centre[0] * 16)), int(round(centre[1] * 16)))
        a = (max(int(round(axes[0] * 16)), 8), max(int(round(axes[1] * 16)), 8))
        cv2.ellipse(self.rgb, c, a, 0, 0, 360, tuple(float(v) for v in colour), -1,
                    cv2.LINE_8, 4)
        cv2.ellipse(self.label, c, a, 0, 0, 360, int(cls), -1, cv2.LINE_8, 4)


def _rect(cam: SceneCamera, x0: float, x1: float, y0: float, y1: float, z: float) -> list:
    """Fronto-parallel rectangle at depth z (world X x0..x1, Y y0..y1) as image points."""
    return [(cam.x(x0, z), cam.y(y0, z)), (cam.x(x1, z), cam.y(y0, z)),
            (cam.x(x1, z), cam.y(y1, z)), (cam.x(x0, z), cam.y(y1, z))]


def _side(cam: SceneCamera, x: float, z0: float, z1: float, y0: float, y1: float) -> list:
    """Wall at lateral position x from depth z0 to z1 (sampled so curves bend it)."""
    zs = np.linspace(z0, z1, max(2, int(np.ceil((z1 - z0) / 4.0)) + 1))
    bottom = [(cam.x(x, z), cam.y(y0, z)) for z in zs]
    top = [(cam.x(x, z), cam.y(y1, z)) for z in zs[::-1]]
    return bottom + top


def _shade(colour, factor: float) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float64) * factor, 0, 255)


# --- upright things -------------------------------------------------------------------------

@dataclass
class Thing:
    """Something standing on the ground at world depth `z` (its nearest point)."""

    z: float
    x: float
    colour: np.ndarray

    def draw(self, canvas: Canvas, cam: SceneCamera) -> np.ndarray | None:
        raise NotImplementedError


@dataclass
class Building(Thing):
    length: float = 15.0
    height: float = 12.0
    side: int = 1
    depth: float = 10.0
    window: np.ndarray = field(default_factory=lambda: np.array([60.0, 70.0, 80.0]))

    def draw(self, canvas: Canvas, cam: SceneCamera) -> None:
        z0, z1 = self.z - cam.z, self.z + self.length - cam.z
        if z1 <= NEAR:
            return
        z0 = max(z0, NEAR)
        canvas.fill(_side(cam, self.x, z0, z1, 0.0, self.height), self.colour, BUILDING)
        for level in np.arange(1.2, self.height - 1.5, 3.0):
            for start in np.arange(self.z + 1.0, self.z + self.length - 1.5, 3.0):
                a, b = start - cam.z, start + 1.3 - cam.z
                if a <= NEAR or cam.f * 1.3 / b < 1.0:
                    continue
                canvas.fill(_side(cam, self.x, a, b, level, level + 1.6), self.window, BUILDING)
        if self.z - cam.z > NEAR:
            far_x = self.x + self.side * self.depth
            canvas.fill(_rect(cam, self.x, far_x, 0.0, self.height, self.z - cam.z),
                        _shade(self.colour, 0.8), BUILDING)


@dataclass
class Barrier(Thing):
    """A wall or a fence along the road edge."""

    length: float = 10.0
    height: float = 1.5
    fence: bool = False

    def draw(self, canvas: Canvas, cam: SceneCamera) -> None:
        z0, z1 = max(self.z - cam.z, NEAR), self.z + self.length - cam.z
        if z1 <= NEAR:
            return
        cls = FENCE if self.fence else WALL
        canvas.fill(_side(cam, self.x, z0, z1, 0.0, self.height), self.colour, cls)
        if self.fence:
            for rail in (0.3, self.height - 0.15):
                canvas.fill(_side(cam, self.x, z0, z1, rail - 0.08, rail + 0.08),
                            _shade(self.colour, 1.5), cls)


@dataclass
class Tree(Thing):
    trunk: float = 2.5
    crown: float = 2.0

    def draw(self, canvas: Canvas, cam: SceneCamera) -> None:
        z = self.z - cam.z
        if z <= NEAR:
            return
        canvas.fill(_rect(cam, self.x - 0.15, self.x + 0.15, 0.0, self.trunk + 0.5, z),
                    (90, 70, 50), VEGETATION)
        cy = self.trunk + self.crown * 0.8
        centre = (cam.x(self.x, z), cam.y(cy, z))
        axes = (cam.f * self.crown / z, cam.f * self.crown * 0.9 / z)
        canvas.ellipse(centre, axes, self.colour, VEGETATION)
        canvas.ellipse((centre[0] - axes[0] * 0.3, centre[1] - axes[1] * 0.3),
                       (axes[0] * 0.45, axes[1] * 0.4), _shade(self.colour, 1.25), VEGETATION)


@dataclass
class Pole(Thing):
    height: float = 4.0
    kind: str = "sign"  # "sign", "light" or "bare"
    plate: int = 0

    def draw(self, canvas: Canvas, cam: SceneCamera) -> None:
        z = self.z - cam.z
        if z <= NEAR:
            return
        canvas.fill(_rect(cam, self.x - 0.07, self.x + 0.07, 0.0, self.height, z),
                    (110, 110, 115), POLE)
        top = self.height
        if self.kind == "light":
            canvas.fill(_rect(cam, self.x - 0.2, self.x + 0.2, top - 1.0, top, z), (35, 35, 30),
                        LIGHT)
            lit = self.plate % 3
            for i, colour in enumerate(((230, 40, 30), (240, 190, 30), (40, 220, 90))):
                level = top - 0.18 - 0.3 * i
                canvas.ellipse((cam.x(self.x, z), cam.y(level, z)),
                               (cam.f * 0.1 / z, cam.f * 0.1 / z),
                               colour if i == lit else _shade(colour, 0.35), LIGHT)
        elif self.kind == "sign":
            face = [(220, 30, 30), (30, 80, 200), (240, 200, 40)][self.plate % 3]
            cx, cy = cam.x(self.x, z), cam.y(top - 0.35, z)
            r = cam.f * 0.35 / z
            if self.plate % 2:
                canvas.fill([(cx - r, cy + r), (cx + r, cy + r), (cx, cy - r)], face, SIGN)
            else:
                canvas.ellipse((cx, cy), (r, r), face, SIGN)
                canvas.ellipse((cx, cy), (r * 0.7, r * 0.7), (235, 235, 235), SIGN)


@dataclass
class Vehicle(Thing):
    cls: int = CAR
    width: float = 1.8
    height: float = 1.5
    length: float = 4.5

    def draw(self, canvas: Canvas, cam: SceneCamera) -> None:
        z = self.z - cam.z
        if z <= NEAR + 0.5:
            return
        half = self.width / 2
        left, right = self.x - half, self.x + half
        ground = [(left - 0.2, z), (left - 0.2, z + self.length),
                  (right + 0.2, z + self.length), (right + 0.2, z)]
        canvas.fill([(cam.x(gx, gz), cam.y(0.0, gz)) for gx, gz in ground], (25, 25, 28), ROAD)
        body = (0.35, self.height)
        # the side facing the camera axis is visible
        near_side = left if self.x > 0 else right
        canvas.fill(_side(cam, near_side, z, z + self.length, *body), _shade(self.colour, 0.75),
                    self.cls)
        glass = (40, 50, 60)
        if self.cls == CAR:
            canvas.fill(_side(cam, near_side, z + 0.6, z + self.length - 0.8,
                              self.height * 0.62, self.height * 0.92), glass, self.cls)
        else:
            for start in np.arange(z + 1.0, z + self.length - 1.5, 2.0):
                canvas.fill(_side(cam, near_side, start, start + 1.4, self.height * 0.55,
                                  self.height * 0.8), glass, self.cls)
        for wheel_z in (z + 0.8, z + self.length - 0.8):
            canvas.ellipse((cam.x(near_side, wheel_z), cam.y(0.35, wheel_z)),
                           (cam.f * 0.3 / wheel_z, cam.f * 0.35 / wheel_z), (20, 20, 20),
                           self.cls)
        canvas.fill(_rect(cam, left, right, *body, z), self.colour, self.cls)
        top = self.height * (0.9 if self.cls == CAR else 0.95)
        canvas.fill(_rect(cam, left + 0.15, right - 0.15, self.height * 0.6, top, z), glass,
                    self.cls)
        for a, b in ((left + 0.05, left + 0.35), (right - 0.35, right - 0.05)):
            canvas.fill(_rect(cam, a, b, 0.65, 0.85, z), (200, 20, 20), self.cls)
            canvas.fill(_rect(cam, a + 0.05, b - 0.05, 0.0, 0.35, z), (20, 20, 20), self.cls)


@dataclass
class Person(Thing):
    height: float = 1.75
    trousers: np.ndarray = field(default_factory=lambda: np.array([40.0, 40.0, 60.0]))
    skin: np.ndarray = field(default_factory=lambda: np.array([220.0, 180.0, 150.0]))

    def draw(self, canvas: Canvas, cam: SceneCamera) -> None:
        z = self.z - cam.z
        if z <= NEAR:
            return
        h, x = self.height, self.x
        canvas.ellipse((cam.x(x, z), cam.y(0, z)), (cam.f * 0.35 / z, cam.f * 0.08 / z),
                       (40, 40, 40), SIDEWALK)
        for leg in (-0.12, 0.12):
            canvas.fill(_rect(cam, x + leg - 0.08, x + leg + 0.08, 0.0, h * 0.5, z),
                        self.trousers, PERSON)
        canvas.fill(_rect(cam, x - 0.22, x + 0.22, h * 0.47, h * 0.84, z), self.colour, PERSON)
        canvas.ellipse((cam.x(x, z), cam.y(h * 0.91, z)), (cam.f * 0.11 / z, cam.f * 0.13 / z),
                       self.skin, PERSON)


@dataclass
class Bicycle(Thing):
    def draw(self, canvas: Canvas, cam: SceneCamera) -> None:
        z = self.z - cam.z
        if z <= NEAR:
            return
        r = cam.f * 0.33 / z
        for dz in (0.0, 1.0):
            zz = z + dz
            centre = (cam.x(self.x, zz), cam.y(0.33, zz))
            canvas.ellipse(centre, (r * 0.35, r), (25, 25, 25), BICYCLE)
        canvas.fill(_side(cam, self.x, z + 0.1, z + 0.9, 0.45, 0.85), self.colour, BICYCLE)


@dataclass
class Anomaly(Thing):
    """A road obstacle: a family cut-out standing on the road, `size` metres tall."""

    size: float = 0.6
    cutout: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 4), np.uint8))
    family: str = ""

    @property
    def width(self) -> float:
        """Metres across: the cut-out keeps its aspect at `size` metres tall."""
        return self.size * self.cutout.shape[1] / self.cutout.shape[0]

    def draw(self, canvas: Canvas, cam: SceneCamera) -> np.ndarray | None:
        """Paints the obstacle; its pixels (HxW bool) before nearer things cover them."""
        z = self.z - cam.z
        if z <= NEAR + 0.5:
            return None
        h = cam.f * self.size / z
        w = h * self.cutout.shape[1] / self.cutout.shape[0]
        if h < 2 or w < 2:
            return None
        bottom, centre = cam.y(0.0, z), cam.x(self.x, z)
        canvas.ellipse((centre, bottom), (w * 0.6, max(h * 0.08, 1.0)), (30, 30, 32), ROAD)
        return paste(canvas.rgb, canvas.label, self.cutout, int(round(centre - w / 2)),
                     int(round(bottom - h)), int(round(w)), int(round(h)), ANOMALY)


def paste(rgb: np.ndarray, label: np.ndarray, cutout: np.ndarray, left: int, top: int,
          width: int, height: int, value: int) -> np.ndarray:
    """Paste an RGBA cut-out resized to width x height at (left, top), clipped to the image.

    Writes `value` into `label` under the object (alpha >= 128); returns that HxW bool mask.
    """
    mask = np.zeros(label.shape, bool)
    width, height = max(width, 1), max(height, 1)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + width, label.shape[1]), min(top + height, label.shape[0])
    if x1 <= x0 or y1 <= y0:
        return mask
    interp = cv2.INTER_AREA if height < cutout.shape[0] else cv2.INTER_LINEAR
    resized = cv2.resize(cutout, (width, height), interpolation=interp)
    part = resized[y0 - top:y1 - top, x0 - left:x1 - left]
    alpha = part[..., 3:4].astype(np.float32) / 255.0
    region = rgb[y0:y1, x0:x1]
    region[...] = region * (1 - alpha) + part[..., :3] * alpha
    solid = part[..., 3] >= 128
    label[y0:y1, x0:x1][solid] = value
    mask[y0:y1, x0:x1] = solid
    return mask


# --- the world --------------------------------------------------------------------------------

@dataclass
class World:
    """Everything fixed while the camera drives: road layout, colours, things, textures."""

    config: SceneConfig
    horizon: float
    curvature: float
    road: tuple[float, float]  # lateral extent of the road (left < 0 < right)
    lane_lines: tuple[float, ...]
    sidewalk: tuple[float, float]  # widths left, right
    terrain: tuple[float, float]
    colours: dict[str, np.ndarray]
    things: list[Thing]
    texture: np.ndarray  # 128x128 float32 in [0, 1], world-anchored ground detail
    clouds: np.ndarray  # HxW float32 in [0, 1]
    lighting: np.ndarray  # per-channel gain

    def camera(self, z: float = 0.0) -> SceneCamera:
        cfg = self.config
        return SceneCamera(f=cfg.focal * cfg.width, cx=cfg.width / 2, horizon=self.horizon,
                           height=cfg.camera_height, curvature=self.curvature, z=z)

    @property
    def calibration(self) -> SceneCalibration:
        """K and pose of the camera; base_link lies on the road right below it."""
        cam, cfg = self.camera(), self.config
        k = (cam.f, 0.0, cam.cx - 0.5, 0.0, cam.f, cam.horizon - 0.5, 0.0, 0.0, 1.0)
        return SceneCalibration(k=k, size=(cfg.height, cfg.width),
                                extrinsics=(0.0, 0.0, cfg.camera_height, *LEVEL_CAMERA_ROTATION))


def _noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    coarse = rng.random((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _colour(rng: np.random.Generator, base, spread: float) -> np.ndarray:
    return np.clip(np.asarray(base, np.float64) + rng.uniform(-spread, spread, 3), 0, 255)


def _vehicle_colour(rng: np.random.Generator) -> np.ndarray:
    palette = [(200, 200, 205), (30, 30, 35), (120, 125, 130), (150, 20, 25), (20, 50, 130),
               (230, 230, 225), (60, 90, 60), (200, 160, 40)]
    return _colour(rng, palette[int(rng.integers(len(palette)))], 15)


def make_world(seed: int, config: SceneConfig = SceneConfig(), anomaly_split: str | None = None,
               anomalies: tuple[int, int] = (1, 3), length: float = 120.0,
               anomaly_depth: tuple[float, float] = (5.0, 40.0),
               anomaly_size: tuple[float, float] = (0.35, 1.5),
               vehicle_start: float = 8.0) -> World:
    """A random street `length` metres long; anomalies of `anomaly_split` families on the road,
    `anomaly_size` metres tall, `anomaly_depth` metres ahead (nearer when that looks tiny);
    vehicles stand at least `vehicle_start` metres ahead."""
    rng = np.random.default_rng(seed)
    lane = rng.uniform(3.0, 3.8)
    lanes_left, lanes_right = int(rng.integers(0, 3)), int(rng.integers(1, 3))
    # the camera drives in the first lane right of the centre
    road = (-lanes_left * lane - lane * 0.5, lane * 0.5 + (lanes_right - 1) * lane)
    lane_lines = tuple(road[0] + i * lane for i in range(1, lanes_left + lanes_right))
    sidewalk = (rng.uniform(1.5, 4.0), rng.uniform(1.5, 4.0))
    terrain = tuple(rng.uniform(0.0, 4.0) if rng.random() < 0.6 else 0.0 for _ in range(2))
    colours = {
        "asphalt": _colour(rng, (95, 95, 98), 18),
        "sidewalk": _colour(rng, (165, 155, 150) if rng.random() < 0.7 else (170, 120, 110), 15),
        "terrain": _colour(rng, (100, 125, 60), 15),
        "sky_top": _colour(rng, (90, 140, 210) if rng.random() < 0.7 else (170, 175, 180), 20),
        "sky_low": _colour(rng, (200, 215, 230), 15),
        "marking": _colour(rng, (225, 225, 220), 10),
    }
    things: list[Thing] = []
    for side in (-1, 1):
        edge = road[1] if side > 0 else -road[0]
        walk = sidewalk[1] if side > 0 else sidewalk[0]
        grass = terrain[1] if side > 0 else terrain[0]
        kerb = side * (edge + walk)
        outer = side * (edge + walk + grass)
        z = rng.uniform(-10, 5)
        while z < length and rng.random() < 0.9:
            span = rng.uniform(8, 25)
            things.append(Building(
                z=z, x=outer + side * rng.uniform(0.2, 3.0),
                colour=_colour(rng, [(170, 160, 145), (140, 110, 95), (190, 185, 175),
                                     (120, 125, 135)][int(rng.integers(4))], 20),
                length=span, height=rng.uniform(5, 25), side=side,
                window=_colour(rng, (60, 70, 85), 15)))
            z += span + (rng.uniform(2, 10) if rng.random() < 0.35 else 0.0)
        z = rng.uniform(-5, 10)
        while z < length:
            things.append(Tree(z=z, x=kerb + side * rng.uniform(-0.8, grass + 0.5),
                               colour=_colour(rng, (60, 110, 45), 25),
                               trunk=rng.uniform(1.5, 3.5), crown=rng.uniform(1.2, 3.0)))
            z += rng.uniform(6, 30)
        z = rng.uniform(0, 15)
        while z < length:
            kind = ["sign", "light", "bare"][int(rng.integers(3))]
            things.append(Pole(z=z, x=side * (edge + 0.5), colour=np.zeros(3),
                               height=rng.uniform(3.0, 5.5), kind=kind,
                               plate=int(rng.integers(6))))
            z += rng.uniform(12, 35)
        if rng.random() < 0.5:
            z0 = rng.uniform(0, length * 0.6)
            things.append(Barrier(z=z0, x=kerb + side * 0.2, colour=_colour(
                rng, (150, 145, 135) if rng.random() < 0.5 else (70, 80, 75), 20),
                length=rng.uniform(5, 25), height=rng.uniform(0.8, 2.0),
                fence=bool(rng.random() < 0.5)))
        for _ in range(int(rng.integers(0, 5))):
            things.append(Person(z=rng.uniform(3, length * 0.6),
                                 x=side * (edge + rng.uniform(0.4, walk - 0.2)),
                                 colour=_colour(rng, rng.uniform(30, 220, 3), 0),
                                 height=rng.uniform(1.55, 1.95),
                                 trousers=_colour(rng, (50, 50, 70), 30)))
        if rng.random() < 0.4:
            things.append(Bicycle(z=rng.uniform(4, 30), x=side * (edge + walk * 0.6),
                                  colour=_colour(rng, rng.uniform(30, 220, 3), 0)))
    centres = [road[0] + (i + 0.5) * lane for i in range(lanes_left + lanes_right)]
    for _ in range(int(rng.integers(1, 7))):
        cls = [CAR, CAR, CAR, CAR, TRUCK, BUS][int(rng.integers(6))]
        size = {CAR: (rng.uniform(1.7, 1.9), rng.uniform(1.35, 1.6), rng.uniform(4.0, 4.8)),
                TRUCK: (2.4, rng.uniform(2.8, 3.5), rng.uniform(6.5, 10.0)),
                BUS: (2.5, 3.2, rng.uniform(10.0, 13.0))}[cls]
        things.append(Vehicle(z=rng.uniform(vehicle_start, max(length * 0.8, vehicle_start)),
                              x=centres[int(rng.integers(len(centres)))] + rng.normal(0, 0.2),
                              colour=_vehicle_colour(rng), cls=cls, width=size[0],
                              height=size[1], length=size[2]))
    if anomaly_split is not None:
        options = families(anomaly_split)
        vehicles = [t for t in things if isinstance(t, Vehicle)]
        for _ in range(int(rng.integers(anomalies[0], anomalies[1] + 1))):
            things.append(_anomaly(rng, options, road, vehicles, anomaly_depth, anomaly_size,
                                   config.focal * config.width))
    horizon = config.height * (config.horizon + rng.uniform(-0.03, 0.03))
    return World(
        config=config, horizon=horizon, curvature=rng.normal(0, 0.0015),
        road=road, lane_lines=lane_lines, sidewalk=sidewalk, terrain=terrain,
        colours=colours, things=things, texture=_noise(rng, (128, 128), 24),
        clouds=_noise(rng, (config.height, config.width), 8),
        lighting=rng.uniform(0.8, 1.15) * rng.uniform(0.94, 1.06, 3))


def _anomaly(rng: np.random.Generator, options: tuple[AnomalyFamily, ...],
             road: tuple[float, float], vehicles: list[Vehicle],
             depth: tuple[float, float], sizes: tuple[float, float], focal: float) -> Anomaly:
    """An obstacle placed where it looks at least MIN_ANOMALY_PX tall (unless that is nearer
    than depth[0])."""
    family = options[int(rng.integers(len(options)))]
    size = rng.uniform(*sizes)
    aspect = rng.uniform(0.6, 1.8)
    far = min(depth[1], focal * size / MIN_ANOMALY_PX)
    for _ in range(20):
        z = rng.uniform(depth[0], max(far, depth[0]))
        x = rng.uniform(road[0] + 0.5, road[1] - 0.5)
        clear = all(abs(x - v.x) > v.width / 2 + size * aspect / 2 + 0.3
                    or not (v.z - 2 < z < v.z + v.length + 2) for v in vehicles)
        if clear:
            break
    cutout = make_cutout(family, rng, 96, int(96 * aspect))
    return Anomaly(z=z, x=x, colour=np.zeros(3), size=size, cutout=cutout, family=family.name)


def _ground(world: World, cam: SceneCamera, canvas: Canvas) -> None:
    """Per-pixel ground and sky: road, lane markings, sidewalks, terrain, clouds."""
    cfg = world.config
    h, w = cfg.height, cfg.width
    rows = np.arange(h, dtype=np.float64)[:, None] + 0.5
    cols = np.arange(w, dtype=np.float64)[None, :] + 0.5
    below = rows[:, 0] > world.horizon + 0.5
    c = world.colours
    t = np.clip((rows - 0) / max(world.horizon, 1.0), 0, 1)[..., None]
    sky = (1 - t) * c["sky_top"] + t * c["sky_low"]
    sky = sky + (world.clouds[..., None] > 0.62) * 45.0 * world.clouds[..., None]
    canvas.rgb[...] = np.broadcast_to(np.clip(sky, 0, 255), canvas.rgb.shape)
    canvas.label[...] = SKY
    r = rows[below]
    depth = cam.f * cam.height / (r - world.horizon)
    lateral = (cols - cam.cx) * depth / cam.f - cam.curvature * depth * depth
    along = depth + cam.z
    tex = world.texture[np.floor(along * 6).astype(np.int64) % 128,
                        np.floor(lateral * 6).astype(np.int64) % 128]
    left, right = world.road
    on_road = (lateral >= left) & (lateral <= right)
    walk_l = (lateral < left) & (lateral >= left - world.sidewalk[0])
    walk_r = (lateral > right) & (lateral <= right + world.sidewalk[1])
    label = np.full(lateral.shape, TERRAIN, np.uint8)
    label[on_road] = ROAD
    label[walk_l | walk_r] = SIDEWALK
    colour = np.empty(lateral.shape + (3,))
    colour[...] = c["terrain"] * (0.75 + 0.5 * tex[..., None])
    walk = walk_l | walk_r
    tiles = ((lateral % 0.6) < 0.04) | ((along % 0.6) < 0.04)
    colour[walk] = c["sidewalk"] * (0.92 + 0.16 * tex[walk][:, None]) * np.where(
        tiles[walk], 0.85, 1.0)[:, None]
    colour[on_road] = c["asphalt"] * (0.85 + 0.3 * tex[on_road][:, None])
    kerb = walk & ((np.abs(lateral - left) < 0.15) | (np.abs(lateral - right) < 0.15))
    colour[kerb] = c["sidewalk"] * 1.15
    marks = (np.abs(lateral - (left + 0.3)) < 0.08) | (np.abs(lateral - (right - 0.3)) < 0.08)
    for line in world.lane_lines:
        marks |= (np.abs(lateral - line) < 0.08) & ((along % 9.0) < 3.0)
    marks &= on_road
    colour[marks] = c["marking"]
    canvas.rgb[below] = np.clip(colour, 0, 255)
    canvas.label[below] = label


def _hood(canvas: Canvas, cfg: SceneConfig) -> None:
    h, w = cfg.height, cfg.width
    pts = [(-0.05 * w, h + 1), (-0.05 * w, h * 0.97), (0.2 * w, h * 0.93), (0.5 * w, h * 0.92),
           (0.8 * w, h * 0.93), (1.05 * w, h * 0.97), (1.05 * w, h + 1)]
    canvas.fill(pts, (25, 28, 32), VOID)
    canvas.fill([(0.3 * w, h * 0.935), (0.7 * w, h * 0.935), (0.65 * w, h * 0.95),
                 (0.35 * w, h * 0.95)], (70, 75, 85), VOID)


def render(world: World, camera_z: float = 0.0, seed: int = 0) -> SceneFrame:
    """The frame seen from longitudinal position `camera_z`; `seed` drives the camera noise."""
    cfg = world.config
    cam = world.camera(camera_z)
    canvas = Canvas(np.zeros((cfg.height, cfg.width, 3), np.float32),
                    np.zeros((cfg.height, cfg.width), np.uint8))
    _ground(world, cam, canvas)
    buildings = sorted((t for t in world.things if isinstance(t, Building)), key=lambda t: -t.z)
    others = sorted((t for t in world.things if not isinstance(t, Building)),
                    key=lambda t: -t.z)
    # Which anomaly (index in world.things + 1) painted each pixel last; 0: none.
    owner = np.zeros((cfg.height, cfg.width), np.int32)
    places = {id(thing): index for index, thing in enumerate(world.things)}
    for thing in buildings + others:
        painted = thing.draw(canvas, cam)
        if isinstance(thing, Anomaly) and painted is not None:
            owner[painted] = places[id(thing)] + 1
    if cfg.ego_hood:
        _hood(canvas, cfg)
    rgb = cv2.GaussianBlur(canvas.rgb, (3, 3), 0.6) * world.lighting
    rng = np.random.default_rng(seed)
    rgb = rgb + rng.normal(0.0, cfg.noise, rgb.shape)
    anomaly_mask = canvas.label == ANOMALY
    semantic = canvas.label.copy()
    semantic[anomaly_mask] = VOID
    anomaly = np.zeros_like(semantic)
    anomaly[anomaly_mask] = 1
    anomaly[canvas.label == VOID] = VOID
    visible = tuple(sorted({t.family for t in world.things if isinstance(t, Anomaly)
                            and _visible(t, cam, cfg)}))
    return SceneFrame(np.clip(rgb, 0, 255).astype(np.uint8), semantic, anomaly,
                      visible if anomaly_mask.any() else (),
                      _obstacles(world, cam, np.where(anomaly_mask, owner, 0)))


def _obstacles(world: World, cam: SceneCamera, owner: np.ndarray) -> tuple[SceneObstacle, ...]:
    """The anomalies with visible pixels, nearest first, in the camera's base_link."""
    found = []
    for index in np.unique(owner[owner > 0]).tolist():
        thing = world.things[index - 1]
        z = thing.z - cam.z
        pixels = (owner == index).astype(np.uint8)
        # The road bends by curvature * z^2 to the right (`SceneCamera.x`); y points left.
        found.append(SceneObstacle(
            index=index - 1, family=thing.family, distance=float(z),
            lateral=float(-(thing.x + cam.curvature * z * z)), width=float(thing.width),
            bbox=tuple(int(v) for v in cv2.boundingRect(pixels)),
            pixels=int(pixels.sum())))
    return tuple(sorted(found, key=lambda o: o.distance))


def _visible(thing: Anomaly, cam: SceneCamera, cfg: SceneConfig) -> bool:
    z = thing.z - cam.z
    return z > NEAR + 0.5 and cam.f * thing.size / z >= 2 and 0 <= cam.x(thing.x, z) < cfg.width


def make_scene(seed: int, config: SceneConfig = SceneConfig(), anomaly_split: str | None = None,
               anomalies: tuple[int, int] = (1, 3)) -> SceneFrame:
    """One random street scene; with `anomaly_split` ("train"/"heldout") obstacles on the road."""
    return render(make_world(seed, config, anomaly_split, anomalies), 0.0, seed)


def sequence_world(seed: int, frames: int = 30, config: SceneConfig = SceneConfig(),
                   anomaly_split: str | None = "heldout", anomalies: tuple[int, int] = (2, 4),
                   speed: float = 6.0, fps: float = 10.0) -> World:
    """The world `make_sequence` drives through (its `calibration` is the drive's camera)."""
    travel = speed * frames / fps
    return make_world(seed, config, anomaly_split, anomalies, length=120.0 + travel,
                      anomaly_depth=(travel + 4.0, travel + 40.0), anomaly_size=(0.8, 1.6),
                      vehicle_start=travel + 8.0)


def approach_world(seed: int, frames: int = 300, config: SceneConfig = SceneConfig(),
                   speed: float = 10.0, fps: float = 30.0, spacing: float = 20.0,
                   first: float = 50.0) -> World:
    """A longer drive's world: a held-out obstacle every `spacing` metres along the road from
    `first` metres ahead of the start, so the drive sees each one come from 50 m to 5 m
    (other traffic stands beyond the last of them, so it never hides them)."""
    travel = speed * frames / fps
    world = make_world(seed, config, None, length=120.0 + travel + first,
                       vehicle_start=travel + first + 10.0)
    rng = np.random.default_rng(seed + 7919)
    vehicles = [t for t in world.things if isinstance(t, Vehicle)]
    options = families("heldout")
    for z in np.arange(first, travel + first, spacing):
        world.things.append(_anomaly(rng, options, world.road, vehicles, (z, z), (0.8, 1.6),
                                     config.focal * config.width))
    return world


def drive(world: World, frames: int, speed: float, fps: float, seed: int) -> list[SceneFrame]:
    """`frames` frames of `world` from a camera moving at `speed` m/s, filmed at `fps`."""
    return [render(world, i * speed / fps, seed * 100003 + i) for i in range(frames)]


def make_sequence(seed: int, frames: int = 30, config: SceneConfig = SceneConfig(),
                  anomaly_split: str | None = "heldout", anomalies: tuple[int, int] = (2, 4),
                  speed: float = 6.0, fps: float = 10.0) -> list[SceneFrame]:
    """A drive at `speed` m/s filmed at `fps`: one world, the camera moving forward."""
    world = sequence_world(seed, frames, config, anomaly_split, anomalies, speed, fps)
    return drive(world, frames, speed, fps, seed)


def write_frames(directory: str | Path, frames: list[SceneFrame],
                 prefix: str = "scene") -> list[str]:
    """`images/`, `labels/` (anomaly 0/1/255) and `semantic/` (train ids) PNGs; the names.

    The layout is the `folder` dataset format, so `ood-perception evaluate --dataset` reads it.
    """
    directory = Path(directory)
    for sub in ("images", "labels", "semantic"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for index, frame in enumerate(frames):
        name = f"{prefix}_{index:05d}"
        cv2.imwrite(str(directory / "images" / f"{name}.png"),
                    cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(directory / "labels" / f"{name}.png"), frame.anomaly)
        cv2.imwrite(str(directory / "semantic" / f"{name}.png"), frame.semantic)
        names.append(name)
    return names


def write_bag(path: str | Path, frames: list[SceneFrame], topic: str = "/camera/image_raw",
              fps: float = 10.0, start_ns: int = 1_700_000_000 * 10**9,
              encoding: str = "rgb8", frame_id: str = "camera") -> list[int]:
    """A rosbag2 (sqlite3) of sensor_msgs/Image (rgb8 or bgr8); header stamp = bag time.

    Returns the stamps (ns).
    """
    from ood_perception.io.rosbag import IMAGE, image_message, open_writer, typestore

    if encoding not in ("rgb8", "bgr8"):
        raise ConfigurationError(f"bag encoding must be rgb8 or bgr8, got {encoding!r}")
    store = typestore()
    header_type = store.types["std_msgs/msg/Header"]
    time_type = store.types["builtin_interfaces/msg/Time"]
    stamps = [start_ns + int(round(i * 1e9 / fps)) for i in range(len(frames))]
    with open_writer(path) as writer:
        connection = writer.add_connection(topic, IMAGE, typestore=store)
        for stamp, frame in zip(stamps, frames, strict=True):
            header = header_type(stamp=time_type(sec=stamp // 10**9, nanosec=stamp % 10**9),
                                 frame_id=frame_id)
            pixels = frame.rgb if encoding == "rgb8" else np.ascontiguousarray(
                frame.rgb[..., ::-1])
            message = image_message(store, header, pixels, encoding)
            writer.write(connection, stamp, store.serialize_cdr(message, IMAGE))
    return stamps


def write_sequence(directory: str | Path, frames: list[SceneFrame],
                   topic: str = "/camera/image_raw", fps: float = 10.0, encoding: str = "rgb8",
                   seed: int | None = None, calibration: SceneCalibration | None = None
                   ) -> list[tuple[str, int]]:
    """A drive as PNGs (`write_frames`), a rosbag in `bag/` and `sequence.json` (name, header
    stamp and obstacles' ground truth of every frame, and the camera's `calibration` when
    given); the (name, stamp ns) pairs."""
    directory = Path(directory)
    if (directory / "bag").exists():
        raise ConfigurationError(f"{directory / 'bag'} exists; choose a new output folder")
    names = write_frames(directory, frames, prefix="frame")
    stamps = write_bag(directory / "bag", frames, topic, fps, encoding=encoding)
    listing = {"topic": topic, "fps": fps, "seed": seed, "encoding": encoding,
               "frames": [{"name": n, "stamp_ns": s, "obstacles": [asdict(o) for o in f.obstacles]}
                          for n, s, f in zip(names, stamps, frames, strict=True)]}
    if calibration is not None:
        listing["calibration"] = asdict(calibration)
    (directory / "sequence.json").write_text(json.dumps(listing, indent=1))
    return list(zip(names, stamps, strict=True))

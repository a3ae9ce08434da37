"""Synthetic night street scenes with exactly aligned Cityscapes label-id maps, for the demo and the tests.

This is not a substitute for NightCity. It gives a network something learnable but non-trivial, drawn under
night lighting whose exposure histogram resembles the paper's Figure 4: most pixels under-exposed, a falling
tail, and a spike of saturated lamps, headlights and windows in the last bin.

A scene is a flat street seen by a forward-facing pinhole camera. Facades stand in planes along the street;
every other object is a flat cut-out at one depth, drawn far to near. Every shape goes into the label map with
the same OpenCV call that draws it, so labels match pixels exactly. Light is computed in linear units and bloomed
by the lens; noise and an sRGB-like gamma then turn it into an 8-bit image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Callable, Protocol

import cv2
import numpy as np

from egnet_core.data.labels import LABEL_IDS, colorize, label_id_to_train_id

logger = logging.getLogger(__name__)

MIN_WIDTH, MIN_HEIGHT = 64, 32
# Cities the paper collected NightCity from; file names carry them as the release does.
CITIES = ("Chicago", "LosAngeles", "NewYork", "HongKong", "London", "Tokyo", "Toronto")
# Some of Cityscapes' train and val cities (folder and file names are lower case in the release).
CITYSCAPES_CITIES = {"train": ("aachen", "bremen", "zurich"), "val": ("frankfurt", "lindau", "munster")}
# Recording names of the form ACDC and Dark Zurich use (GoPro files); Dark Zurich's labelled val is GOPR0356.
ACDC_SEQUENCES = {"train": ("GOPR0351", "GOPR0355"), "val": ("GOPR0594",)}
DARK_ZURICH_SEQUENCES = {"train": ("GOPR0002", "GOPR0003"), "val": ("GOPR0356",)}

_ROAD, _SIDEWALK, _BUILDING, _POLE = (LABEL_IDS[n] for n in ("road", "sidewalk", "building", "pole"))
_TRAFFIC_LIGHT, _TRAFFIC_SIGN = LABEL_IDS["traffic light"], LABEL_IDS["traffic sign"]
_VEGETATION, _SKY, _PERSON, _CAR = (LABEL_IDS[n] for n in ("vegetation", "sky", "person", "car"))

_SHIFT = 4  # OpenCV draws with 4 fractional bits, so small far objects keep their sub-pixel position.
_DARK = (0.0, 0.0, 0.0)
# Linear light -> 8-bit code through an sRGB-like gamma; 16-bit input keeps the darkest codes distinct.
_GAMMA_LUT = np.round(255 * np.linspace(0.0, 1.0, 65536) ** (1 / 2.2)).astype(np.uint8)
# Standard normal quantiles of 256 equally likely bytes: Gaussian noise at the cost of random bytes.
_GAUSSIAN_LUT = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)

Colour = tuple[float, float, float]


@dataclass(frozen=True)
class NightScene:
    """One rendered scene."""

    image: np.ndarray  # H×W×3 uint8 RGB
    label_ids: np.ndarray  # H×W uint8 Cityscapes label ids


@dataclass(frozen=True)
class SyntheticDataset:
    """What a ``write_*`` function wrote, laid out like the release of ``dataset``."""

    root: Path
    train: int  # number of training images
    val: int  # number of validation images
    size: tuple[int, int]  # (width, height)
    dataset: str = "nightcity"  # the data set name whose layout it has, as configs and the CLI name it


# ------------------------------------------------------------------------------------------ camera, light, canvas


@dataclass(frozen=True)
class _Camera:
    """Pinhole camera above a flat street: +X right, +Y up, +Z forward, in metres."""

    width: int
    height: int
    focal: float  # pixels
    cx: float  # column of the vanishing point
    horizon: float  # row of the horizon
    eye: float  # camera height above the road

    def project(self, x, y, z) -> np.ndarray:
        """World points -> N×2 pixel coordinates (column, row)."""
        scale = self.focal / np.asarray(z, dtype=np.float64)
        return np.stack([self.cx + np.asarray(x) * scale, self.horizon + (self.eye - np.asarray(y)) * scale], -1)


@dataclass(frozen=True)
class _Light:
    position: tuple[float, float, float]
    colour: Colour  # intensity per channel; irradiance is colour × cos / distance² × the lamp's pattern
    beam: int = 0  # 0: a shielded street lamp shining down; +1 / -1: a low-beam headlight shining along ±Z


def _irradiance(x, y, z, normal, lights: list[_Light], ambient: Colour, wrap: float = 0.0) -> np.ndarray:
    """Light falling on surface points (arrays of one shape) -> that shape × 3, linear.

    A zero normal receives the ambient light only. ``wrap`` > 0 lets light from behind reach flat cut-outs a
    little, as it would a rounded body.
    """
    nx, ny, nz = normal
    # Channels first while summing: numpy broadcasts over a trailing axis of 3 several times slower.
    total = [np.full(np.shape(x), value, np.float32) for value in ambient]
    for light in lights:
        lx, ly, lz = light.position
        dx, dy, dz = lx - x, ly - y, lz - z
        dist2 = dx * dx + dy * dy + dz * dz + 0.25  # + 0.25: no singularity at the lamp itself
        dist = np.sqrt(dist2)
        cosine = (nx * dx + ny * dy + nz * dz) / dist
        power = np.maximum((cosine + wrap) / (1 + wrap), 0) / dist2
        if light.beam:
            power = power * _beam_pattern(dx, dy, -dz * light.beam)
        else:  # street lamps are shielded: a pool of light below them, little sideways, none upwards
            power = power * np.square(np.square(np.maximum(dy, 0) / dist))
        power = np.asarray(power, np.float32)
        for channel, value in zip(total, light.colour):
            channel += power * np.float32(value)
    return np.stack(total, axis=-1)


def _beam_pattern(dx, dy, along):
    """Low-beam shape: aimed about 2° down, about 20° wide, dark behind the lamp."""
    ahead = np.maximum(along, 1e-3)
    lateral, drop = dx / ahead, dy / ahead
    return np.where(along > 0, np.exp(-np.square(lateral / 0.35) - np.square((drop - 0.035) / 0.06)), 0)


class _Canvas:
    """The layers of one scene; a shape always goes into all of them with the same OpenCV call."""

    def __init__(self, camera: _Camera) -> None:
        shape = (camera.height, camera.width)
        self.camera = camera
        self.radiance = np.zeros(shape + (3,), np.float32)  # light reflected by surfaces, linear RGB
        self.emission = np.zeros(shape + (3,), np.float32)  # light sources; only these bloom in the lens
        self.labels = np.zeros(shape, np.uint8)  # 0 'unlabeled' wherever nothing is drawn
        # Which plane (ground, a facade) each pixel shows, so that one pass can light them all before the cut-outs
        # are drawn; 0 for the sky. Plane i is the set of points P with n·P = k, for planes[i] = (n, k).
        self.surface = np.zeros(shape, np.int32)
        self.planes: list[tuple[Colour, float]] = [(_DARK, 0.0)]

    def add_plane(self, normal: Colour, k: float) -> int:
        self.planes.append((normal, k))
        return len(self.planes) - 1

    def cutout(self, points, z: float, label: int, radiance: Colour, emission: Colour = _DARK) -> None:
        """A polygon given in metres, (x, y) corners in the plane at depth z."""
        points = np.asarray(points, dtype=np.float64)
        pixels = [_fixed_point(self.camera.project(points[:, 0], points[:, 1], z))]
        self._paint(lambda img, c: cv2.fillPoly(img, pixels, c, cv2.LINE_8, _SHIFT), label, radiance, emission)

    def box(self, x0, x1, y0, y1, z, label: int, radiance: Colour, emission: Colour = _DARK) -> None:
        self.cutout([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], z, label, radiance, emission)

    def ellipse(self, x, y, rx, ry, z, label: int, radiance: Colour, emission: Colour = _DARK) -> None:
        scale = self.camera.focal / z * (1 << _SHIFT)
        centre = tuple(int(v) for v in _fixed_point(self.camera.project(x, y, z)))
        axes = (max(int(round(rx * scale)), 1), max(int(round(ry * scale)), 1))

        def draw(img, colour):
            cv2.ellipse(img, centre, axes, 0, 0, 360, colour, -1, cv2.LINE_8, _SHIFT)

        self._paint(draw, label, radiance, emission)

    def _paint(self, draw: Callable, label: int, radiance: Colour, emission: Colour) -> None:
        draw(self.labels, int(label))
        draw(self.radiance, tuple(float(v) for v in radiance))
        draw(self.emission, tuple(float(v) for v in emission))


def _fixed_point(pixels) -> np.ndarray:
    return np.round(np.asarray(pixels) * (1 << _SHIFT)).astype(np.int32)


def _lit(albedo, irradiance) -> Colour:
    return tuple(float(a * e) for a, e in zip(albedo, irradiance))


def _scaled(colour, factor: float) -> Colour:
    return tuple(float(c * factor) for c in colour)


# ------------------------------------------------------------------------------------------ cut-outs


class _Cutout(Protocol):
    """A flat object standing at one depth, lit as a whole; drawn far to near."""

    x: float
    z: float

    def draw(self, canvas: _Canvas, irradiance: np.ndarray) -> None: ...

    def light(self) -> _Light | None: ...


@dataclass(frozen=True)
class _StreetLamp:
    x: float  # foot of the post, on the sidewalk
    z: float
    height: float
    arm: float  # signed reach of the arm towards the road
    glow: Colour  # emitted radiance of the lamp head; > 1 saturates

    def draw(self, canvas: _Canvas, irradiance: np.ndarray) -> None:
        grey = _lit((0.12, 0.12, 0.13), irradiance)
        head_x, top = self.x + self.arm, self.height
        canvas.box(self.x - 0.1, self.x + 0.1, 0.0, top, self.z, _POLE, grey)
        arm = [(self.x, top - 0.35), (self.x, top - 0.15), (head_x, top + 0.05), (head_x, top - 0.1)]
        canvas.cutout(arm, self.z, _POLE, grey)
        # Cityscapes labels small lamps mounted on a pole as pole.
        canvas.ellipse(head_x, top - 0.1, 0.45, 0.15, self.z, _POLE, _DARK, self.glow)

    def light(self) -> _Light:
        return _Light((self.x + self.arm, self.height - 0.2, self.z), _scaled(self.glow, 4.0))


@dataclass(frozen=True)
class _TrafficLight:
    x: float  # foot of the post
    z: float
    reach: float  # signed length of the mast arm over the road
    state: int  # 0 red, 1 amber, 2 green: the one lit lamp
    brightness: float

    def draw(self, canvas: _Canvas, irradiance: np.ndarray) -> None:
        grey = _lit((0.1, 0.1, 0.1), irradiance)
        mast_end = self.x + self.reach
        canvas.box(self.x - 0.09, self.x + 0.09, 0.0, 5.6, self.z, _POLE, grey)
        canvas.box(min(self.x, mast_end), max(self.x, mast_end), 5.4, 5.55, self.z, _POLE, grey)
        self._head(canvas, mast_end, 4.3, irradiance)
        self._head(canvas, self.x, 2.4, irradiance)

    def _head(self, canvas: _Canvas, x: float, bottom: float, irradiance: np.ndarray) -> None:
        canvas.box(x - 0.18, x + 0.18, bottom, bottom + 1.0, self.z, _TRAFFIC_LIGHT, _lit((0.03,) * 3, irradiance))
        for index, colour in enumerate(((1.0, 0.08, 0.04), (1.0, 0.6, 0.05), (0.1, 1.0, 0.55))):
            glow = _scaled(colour, self.brightness) if index == self.state else _DARK
            dim = _lit(_scaled(colour, 0.04), irradiance)
            canvas.ellipse(x, bottom + 0.8 - 0.3 * index, 0.1, 0.1, self.z, _TRAFFIC_LIGHT, dim, glow)

    def light(self) -> None:
        return None


@dataclass(frozen=True)
class _Sign:
    x: float
    z: float
    height: float
    shape: int  # 0 round prohibition, 1 warning triangle, 2 blue rectangle, 3 yellow diamond

    def draw(self, canvas: _Canvas, irradiance: np.ndarray) -> None:
        canvas.box(self.x - 0.04, self.x + 0.04, 0.0, self.height, self.z, _POLE, _lit((0.1,) * 3, irradiance))
        # Sign faces are retro-reflective: they return headlight and lamp light brighter than paint does.
        shine = irradiance * 3.0
        red, white = _lit((0.6, 0.05, 0.04), shine), _lit((0.7, 0.7, 0.7), shine)
        x, y, z = self.x, self.height + 0.35, self.z
        if self.shape == 0:
            canvas.ellipse(x, y, 0.32, 0.32, z, _TRAFFIC_SIGN, red)
            canvas.ellipse(x, y, 0.23, 0.23, z, _TRAFFIC_SIGN, white)
        elif self.shape == 1:
            canvas.cutout([(x - 0.38, y - 0.3), (x + 0.38, y - 0.3), (x, y + 0.36)], z, _TRAFFIC_SIGN, red)
            canvas.cutout([(x - 0.24, y - 0.22), (x + 0.24, y - 0.22), (x, y + 0.2)], z, _TRAFFIC_SIGN, white)
        elif self.shape == 2:
            canvas.box(x - 0.35, x + 0.35, y - 0.25, y + 0.25, z, _TRAFFIC_SIGN, _lit((0.05, 0.15, 0.55), shine))
        else:
            diamond = [(x, y - 0.38), (x + 0.38, y), (x, y + 0.38), (x - 0.38, y)]
            canvas.cutout(diamond, z, _TRAFFIC_SIGN, _lit((0.7, 0.55, 0.05), shine))

    def light(self) -> None:
        return None


@dataclass(frozen=True)
class _Tree:
    x: float
    z: float
    trunk: float  # height of the bare trunk; 0 for a bush
    radius: float  # of the crown
    lobes: tuple[tuple[float, float, float, float], ...]  # (dx, dy, radius fraction, shade) per crown lobe

    def draw(self, canvas: _Canvas, irradiance: np.ndarray) -> None:
        x, z, centre = self.x, self.z, self.trunk + self.radius * 0.8
        if self.trunk > 0:  # Cityscapes counts the trunk as vegetation too.
            canvas.box(x - 0.15, x + 0.15, 0.0, centre, z, _VEGETATION, _lit((0.1, 0.07, 0.04), irradiance))
        for dx, dy, fraction, shade in self.lobes:
            leaves = _lit((0.05 * shade, 0.14 * shade, 0.04 * shade), irradiance)
            r = self.radius * fraction
            canvas.ellipse(x + dx * self.radius, centre + dy * self.radius, r, r * 0.85, z, _VEGETATION, leaves)

    def light(self) -> None:
        return None


@dataclass(frozen=True)
class _Car:
    x: float
    z: float
    width: float
    height: float
    paint: Colour
    oncoming: bool  # True: we see the front and its headlights; False: the rear and its tail lights
    lamps: float  # emitted radiance of the lights; 0 for a parked car

    def draw(self, canvas: _Canvas, irradiance: np.ndarray) -> None:
        half, h, x, z = self.width / 2, self.height, self.x, self.z
        body, tyre = _lit(self.paint, irradiance), _lit((0.02,) * 3, irradiance)
        for side in (-1, 1):
            canvas.box(x + side * (half - 0.05), x + side * (half - 0.38), 0.0, 0.35, z, _CAR, tyre)
        shell = [(-half, 0.22), (half, 0.22), (half, 0.6 * h), (half - 0.1, 0.64 * h), (half - 0.28, h),
                 (-half + 0.28, h), (-half + 0.1, 0.64 * h), (-half, 0.6 * h)]
        canvas.cutout([(x + px, py) for px, py in shell], z, _CAR, body)
        glass = [(-half + 0.2, 0.66 * h), (half - 0.2, 0.66 * h), (half - 0.34, 0.95 * h), (-half + 0.34, 0.95 * h)]
        canvas.cutout([(x + px, py) for px, py in glass], z, _CAR, _lit((0.02, 0.025, 0.03), irradiance))
        canvas.box(x - 0.25, x + 0.25, 0.28, 0.4, z, _CAR, _lit((0.5, 0.5, 0.45), irradiance))  # licence plate
        for side in (-1, 1):
            if self.oncoming:
                glow = _scaled((1.0, 0.95, 0.85), self.lamps)
                canvas.ellipse(x + side * (half - 0.3), 0.47 * h, 0.2, 0.09, z, _CAR, body, glow)
            else:
                glow = _scaled((1.0, 0.05, 0.03), self.lamps)
                red = _lit((0.2, 0.02, 0.02), irradiance)
                canvas.box(x + side * (half - 0.05), x + side * (half - 0.35), 0.42 * h, 0.52 * h, z, _CAR, red, glow)

    def light(self) -> _Light | None:
        if not (self.oncoming and self.lamps > 0):
            return None
        return _Light((self.x, 0.65, self.z - 2.2), _scaled((1.0, 0.95, 0.85), 15.0 * self.lamps), beam=-1)


@dataclass(frozen=True)
class _Person:
    x: float
    z: float
    height: float
    stride: float  # half the distance between the feet
    swing: float  # sideways reach of the hands
    clothes: Colour
    trousers: Colour
    skin: Colour

    def draw(self, canvas: _Canvas, irradiance: np.ndarray) -> None:
        s, h, x, z = self.height / 1.75, self.height, self.x, self.z
        head, shoulder, hip, hand = 0.115 * s, h - 0.28 * s, 0.52 * h, 0.47 * h
        legs, top = _lit(self.trousers, irradiance), _lit(self.clothes, irradiance)
        for side in (-1, 1):
            leg = [(0.01, hip), (0.16 * s, hip), (self.stride + 0.07, 0.0), (self.stride - 0.06, 0.0)]
            canvas.cutout([(x + side * px, py) for px, py in leg], z, _PERSON, legs)
            arm = [(0.17 * s, shoulder), (0.26 * s, shoulder - 0.04), (0.24 * s + self.swing, hand),
                   (0.17 * s + self.swing, hand)]
            canvas.cutout([(x + side * px, py) for px, py in arm], z, _PERSON, top)
        torso = [(-0.2 * s, shoulder), (0.2 * s, shoulder), (0.17 * s, hip - 0.03), (-0.17 * s, hip - 0.03)]
        canvas.cutout([(x + px, py) for px, py in torso], z, _PERSON, top)
        canvas.ellipse(x, h - head, head * 0.85, head, z, _PERSON, _lit(self.skin, irradiance))

    def light(self) -> None:
        return None


# ------------------------------------------------------------------------------------------ street and facades


@dataclass(frozen=True)
class _Street:
    road: float  # half width of the carriageway
    walk: float  # width of each sidewalk; facades stand at ±(road + walk)
    end: float  # ground beyond this depth is thinner than a pixel row and stays 'unlabeled'
    dashes: tuple[float, ...]  # X of the dashed lane lines
    road_albedo: float
    walk_albedo: float
    ambient: Colour  # moonlight and sky glow falling everywhere


@dataclass(frozen=True)
class _Facade:
    """A rectangle standing on the ground: a building front with windows, or a hedge."""

    side: int  # -1 / +1: the plane X = side·offset along the street; 0: the plane Z = offset across its end
    offset: float
    start: float  # extent within the plane: Z along the street, X across its end
    stop: float
    height: float
    label: int
    albedo: Colour
    storey: float  # window grid: storey height and bay width in metres
    bay: float
    lit: float  # share of lit windows; 0 for hedges, which also have no windows
    window: Colour  # emitted radiance of a lit window at brightness 1

    def normal(self) -> Colour:
        """Unit normal facing the street."""
        return (float(-self.side), 0.0, 0.0) if self.side else (0.0, 0.0, -1.0)

    def corners(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        along = np.array([self.start, self.stop, self.stop, self.start])
        fixed = np.full(4, self.offset)
        y = np.array([0.0, 0.0, self.height, self.height])
        return (fixed * self.side, y, along) if self.side else (along, y, fixed)


# ------------------------------------------------------------------------------------------ random layout


def _random_camera(rng: np.random.Generator, width: int, height: int) -> _Camera:
    return _Camera(
        width=width,
        height=height,
        focal=width * rng.uniform(0.5, 0.6),
        cx=width * rng.uniform(0.45, 0.55),
        horizon=height * rng.uniform(0.4, 0.48),
        eye=rng.uniform(1.3, 1.7),
    )


def _random_street(rng: np.random.Generator) -> _Street:
    road = rng.uniform(4.5, 8.0)
    tint = (0.9, 0.8, 0.75) if rng.random() < 0.5 else (0.7, 0.8, 1.0)
    return _Street(
        road=road,
        walk=rng.uniform(2.0, 4.5),
        end=150.0,
        dashes=(0.0, -road / 2, road / 2) if road > 6.5 else (0.0,),
        road_albedo=rng.uniform(0.07, 0.12),
        walk_albedo=rng.uniform(0.14, 0.22),
        ambient=_scaled(tint, rng.uniform(0.005, 0.02)),
    )


def _random_facades(rng: np.random.Generator, street: _Street) -> list[_Facade]:
    """Buildings and hedges along both sides, and sometimes a row of buildings closing the street's end."""
    facades = []
    end = rng.uniform(90.0, 140.0)
    if rng.random() < 0.6:
        x = -60.0
        while x < 60.0:
            width = rng.uniform(10.0, 30.0)
            facades.append(_random_building(rng, 0, end + rng.uniform(0, 20), x, x + width, rng.uniform(10, 50)))
            x += width
    offset = street.road + street.walk
    for side in (-1, 1):
        z = rng.uniform(0.5, 4.0)
        while z < end:
            length = rng.uniform(8.0, 30.0)
            if rng.random() < 0.2:
                hedge = _Facade(side, offset, z, z + length, rng.uniform(1.0, 2.5), _VEGETATION,
                                albedo=(0.04, 0.1, 0.035), storey=1.0, bay=1.0, lit=0.0, window=_DARK)
                facades.append(hedge)
            else:
                facades.append(_random_building(rng, side, offset, z, z + length, rng.uniform(6.0, 30.0)))
            z += length
    return facades


def _random_building(
    rng: np.random.Generator, side: int, offset: float, start: float, stop: float, height: float
) -> _Facade:
    grey = rng.uniform(0.08, 0.3)
    warm = (1.0, 0.72, 0.4) if rng.random() < 0.7 else (0.8, 0.9, 1.0)
    return _Facade(
        side, offset, start, stop, height, _BUILDING,
        albedo=(grey * rng.uniform(0.9, 1.1), grey, grey * rng.uniform(0.85, 1.05)),
        storey=rng.uniform(3.0, 3.8),
        bay=rng.uniform(2.0, 3.5),
        lit=rng.uniform(0.05, 0.45),
        window=_scaled(warm, rng.uniform(0.8, 1.2)),
    )


def _random_cutouts(rng: np.random.Generator, street: _Street) -> list[_Cutout]:
    return [
        *_random_lamps(rng, street),
        *_random_traffic_lights(rng, street),
        *_random_signs(rng, street),
        *_random_trees(rng, street),
        *_random_cars(rng, street),
        *_random_persons(rng, street),
    ]


def _random_lamps(rng: np.random.Generator, street: _Street) -> list[_StreetLamp]:
    colour = (1.0, 0.62, 0.3) if rng.random() < 0.5 else (0.95, 0.95, 1.0)  # sodium or LED
    level = rng.uniform(0.6, 1.5)
    lamps = []
    for side in (-1, 1):
        if rng.random() < 0.15:
            continue
        spacing = rng.uniform(14.0, 30.0)
        z = rng.uniform(4.0, spacing)
        while z < 110.0:
            glow = _scaled(colour, level * rng.uniform(3.0, 8.0))
            arm = -side * rng.uniform(1.0, 2.5)
            lamps.append(_StreetLamp(side * (street.road + 0.4), z, rng.uniform(7.0, 9.5), arm, glow))
            z += spacing
    return lamps


def _random_traffic_lights(rng: np.random.Generator, street: _Street) -> list[_TrafficLight]:
    lights = []
    for _ in range(rng.integers(1, 3)):
        side = rng.choice((-1, 1))
        reach = -side * rng.uniform(2.5, min(5.0, street.road))
        state, brightness = int(rng.integers(3)), rng.uniform(3.0, 6.0)
        lights.append(_TrafficLight(side * (street.road + 0.3), rng.uniform(12.0, 45.0), reach, state, brightness))
    return lights


def _random_signs(rng: np.random.Generator, street: _Street) -> list[_Sign]:
    signs = []
    for _ in range(rng.integers(1, 4)):
        x = rng.choice((-1, 1)) * (street.road + 0.5 + rng.uniform(0, 0.4) * street.walk)
        signs.append(_Sign(x, rng.uniform(6.0, 50.0), rng.uniform(2.0, 2.5), int(rng.integers(4))))
    return signs


def _random_trees(rng: np.random.Generator, street: _Street) -> list[_Tree]:
    trees = []
    for side in (-1, 1):
        for _ in range(rng.integers(0, 5)):
            x = side * (street.road + street.walk * rng.uniform(0.55, 0.85))
            trunk, radius = rng.uniform(1.8, 3.0), rng.uniform(1.2, 2.6)
            trees.append(_Tree(x, rng.uniform(5.0, 90.0), trunk, radius, _random_lobes(rng)))
        for _ in range(rng.integers(0, 3)):  # bushes
            x = side * (street.road + street.walk - 0.5)
            trees.append(_Tree(x, rng.uniform(4.0, 60.0), 0.0, rng.uniform(0.5, 0.9), _random_lobes(rng)))
    return trees


def _random_lobes(rng: np.random.Generator) -> tuple[tuple[float, float, float, float], ...]:
    count = int(rng.integers(4, 7))
    offsets = rng.uniform(-0.5, 0.5, size=(count, 2))
    sizes, shades = rng.uniform(0.5, 0.8, count), rng.uniform(0.6, 1.4, count)
    return tuple((float(dx), float(dy), float(r), float(s)) for (dx, dy), r, s in zip(offsets, sizes, shades))


_PAINTS = ((0.03, 0.03, 0.035), (0.6, 0.6, 0.6), (0.35, 0.36, 0.38), (0.5, 0.05, 0.04), (0.05, 0.12, 0.4))


def _random_cars(rng: np.random.Generator, street: _Street) -> list[_Car]:
    """Right-hand traffic: oncoming cars on the left show headlights, cars ahead on the right show tail lights."""
    lanes = (0.25, 0.75) if street.road > 6.5 else (0.5,)
    cars = []
    for _ in range(rng.integers(1, 8)):
        kind = rng.choice(3, p=(0.4, 0.4, 0.2))  # oncoming, ahead, parked
        z = 5.0 + 65.0 * rng.random() ** 1.5
        if kind == 2:  # parked at the kerb, lights off
            x, lamps = rng.choice((-1, 1)) * (street.road - 1.1), 0.0
        else:
            x = (1 if kind == 1 else -1) * street.road * rng.choice(lanes)
            lamps = rng.uniform(4.0, 10.0) if kind == 0 else rng.uniform(1.5, 4.0)
        paint = _scaled(_PAINTS[rng.integers(len(_PAINTS))], rng.uniform(0.8, 1.2))
        cars.append(_Car(x, z, rng.uniform(1.7, 2.0), rng.uniform(1.4, 1.9), paint, kind == 0, lamps))
    return cars


def _random_persons(rng: np.random.Generator, street: _Street) -> list[_Person]:
    persons = []
    for _ in range(rng.integers(1, 6)):
        x = rng.choice((-1, 1)) * (street.road + street.walk * rng.uniform(0.2, 0.8))
        z, height = rng.uniform(4.0, 40.0), rng.uniform(1.55, 1.9)
        stride, swing = rng.uniform(0.0, 0.25), rng.uniform(0.0, 0.1)
        clothes, trousers = tuple(rng.uniform(0.02, 0.4, 3)), tuple(rng.uniform(0.02, 0.15, 3))
        skin = _scaled((0.6, 0.42, 0.32), rng.uniform(0.3, 1.0))
        persons.append(_Person(x, z, height, stride, swing, clothes, trousers, skin))
    return persons


def _random_ego_headlights(rng: np.random.Generator) -> list[_Light]:
    if rng.random() < 0.2:
        return []
    power = rng.uniform(60.0, 200.0)
    return [_Light((side * 0.7, 0.65, 0.0), _scaled((1.0, 0.95, 0.85), power), beam=1) for side in (-1, 1)]


# ------------------------------------------------------------------------------------------ painting


def _first_ground_row(camera: _Camera) -> int:
    return min(max(int(np.floor(camera.horizon - 0.5)) + 1, 0), camera.height)


def _paint_sky(canvas: _Canvas, rng: np.random.Generator) -> None:
    """City sky: nearly black overhead, lit orange or blue by the city towards the horizon."""
    camera, rows = canvas.camera, _first_ground_row(canvas.camera)
    t = ((np.arange(rows, dtype=np.float32) + 0.5) / camera.horizon)[:, None, None]
    tint = np.array((1.0, 0.7, 0.5) if rng.random() < 0.6 else (0.55, 0.65, 1.0), np.float32)
    canvas.emission[:rows] = np.float32(0.0015) + rng.uniform(0.005, 0.02) * tint * t**4
    canvas.labels[:rows] = _SKY


def _paint_ground(canvas: _Canvas, street: _Street) -> None:
    """Road and sidewalks with lane markings and kerbs, from where each pixel's ray meets the ground."""
    camera, first = canvas.camera, _first_ground_row(canvas.camera)
    rows = np.arange(first, camera.height, dtype=np.float32) + np.float32(0.5 - camera.horizon)
    z = (camera.focal * camera.eye / rows)[:, None]  # depth of the ground seen in each row
    x = ((np.arange(camera.width, dtype=np.float32) + np.float32(0.5 - camera.cx)) / camera.focal)[None, :] * z
    across = np.abs(x)
    road = across < street.road
    dashed = np.zeros_like(road)
    for dash in street.dashes:
        dashed |= np.abs(x - dash) < 0.08
    phase = z / 9.0 - np.floor(z / 9.0)  # dashes 3.5 m long every 9 m
    edge_line = (across > street.road - 0.35) & (across < street.road - 0.2)
    marked = road & ((dashed & (phase < 3.5 / 9.0)) | edge_line)
    kerb = (across >= street.road) & (across < street.road + 0.2)
    albedo = np.where(road, street.road_albedo, street.walk_albedo)
    albedo = np.where(marked, 0.45, np.where(kerb, 0.28, albedo)).astype(np.float32)
    canvas.radiance[first:] = albedo[..., None]
    canvas.labels[first:] = np.where(z > street.end, 0, np.where(road, _ROAD, _SIDEWALK))
    canvas.surface[first:] = canvas.add_plane((0.0, 1.0, 0.0), 0.0)


def _paint_facades(canvas: _Canvas, facades: list[_Facade], salt: int) -> None:
    """Outline every facade, then texture all facade pixels at once from where each one meets its plane."""
    owner = np.zeros(canvas.labels.shape, np.int32)  # 1 + index of the facade seen in each pixel
    for index, facade in enumerate(facades, start=1):
        points = [_fixed_point(canvas.camera.project(*facade.corners()))]
        cv2.fillPoly(canvas.labels, points, facade.label, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(owner, points, index, cv2.LINE_8, _SHIFT)
    shown = np.flatnonzero(owner.any(axis=1))
    if not shown.size:
        return
    band = slice(shown[0], shown[-1] + 1)  # the rows that show any facade; the rest is left alone
    owner = owner[band]
    along, up = _facade_coordinates(canvas.camera, facades, owner, band)
    glass, brightness = _windows(facades, owner, along, up, salt)
    albedo = np.take(np.array([_DARK] + [f.albedo for f in facades], np.float32), owner, axis=0)
    glow = np.take(np.array([_DARK] + [f.window for f in facades], np.float32), owner, axis=0)
    planes = np.array([0] + [canvas.add_plane(f.normal(), -f.offset) for f in facades], np.int32)
    seen = (owner > 0).view(np.uint8)
    # OpenCV copies through a mask into the band's rows in place, several times faster than np.copyto.
    cv2.copyTo(np.where(glass[..., None], np.float32(0.03), albedo), seen, canvas.radiance[band])
    cv2.copyTo(glow * brightness[..., None], seen, canvas.emission[band])
    cv2.copyTo(np.take(planes, owner), seen, canvas.surface[band])


def _per_pixel(facades: list[_Facade], name: str, owner: np.ndarray, empty: float) -> np.ndarray:
    """One field of the facade seen in each pixel; ``empty`` where none is."""
    return np.take(np.array([empty] + [getattr(facade, name) for facade in facades], np.float32), owner)


def _facade_coordinates(camera: _Camera, facades: list[_Facade], owner: np.ndarray, band: slice):
    """Where each pixel's ray meets its facade: metres along the facade, and metres above the ground."""
    side, offset, start, stop = (_per_pixel(facades, name, owner, 0.0) for name in ("side", "offset", "start", "stop"))
    ray_x = ((np.arange(camera.width, dtype=np.float32) + np.float32(0.5 - camera.cx)) / camera.focal)[None, :]
    ray_y = (np.arange(band.start, band.stop, dtype=np.float32) + np.float32(0.5 - camera.horizon)) / camera.focal
    along_street = side != 0
    # Side facades: depth from the column; across the street's end: the depth is the facade's own.
    z = np.where(along_street, np.clip(offset / np.maximum(np.abs(ray_x), 1e-6), start, stop), offset)
    return np.where(along_street, z, ray_x * z), camera.eye - ray_y[:, None] * z


def _windows(facades: list[_Facade], owner: np.ndarray, along: np.ndarray, up: np.ndarray, salt: int):
    """Which pixels are glass, and how brightly each one glows: a window grid above shop fronts."""
    bay, storey = _per_pixel(facades, "bay", owner, 1.0), _per_pixel(facades, "storey", owner, 1.0)
    lit, height = _per_pixel(facades, "lit", owner, 0.0), _per_pixel(facades, "height", owner, 0.0)
    column, row = np.floor(along / bay), np.floor(up / storey)
    u, v = along / bay - column, up / storey - row  # position within one window's bay, 0..1
    has_windows = lit > 0
    glass = has_windows & (u > 0.2) & (u < 0.75) & (v > 0.3) & (v < 0.85) & (row >= 1) & (up < height - 0.8)
    chance = _hash01(salt, owner, column, row)
    brightness = np.where(glass & (chance < lit), _room_light(chance / np.maximum(lit, 1e-6), 0.2), 0)
    # Shop fronts two bays wide fill the ground storey; one in seven is lit.
    shop_column = np.floor(column / 2)
    shop_u = (column + u) / 2 - shop_column
    shop = has_windows & (up > 0.4) & (up < 2.8) & (shop_u > 0.06) & (shop_u < 0.94)
    chance = _hash01(salt + 1, owner, shop_column)
    brightness = np.where(shop & (chance < 0.15), _room_light(chance / 0.15, 0.4), brightness)
    return glass | shop, brightness.astype(np.float32)


def _room_light(quantile: np.ndarray, bright: float) -> np.ndarray:
    """Lit rooms are dim, except the ``bright`` share that saturates the sensor, as in real night photographs.

    Few windows land in between, which is what gives NightCity's histogram its spike in the last bin.
    """
    return np.where(quantile > 1 - bright, 2.0, 0.04 + 0.25 * quantile * quantile)


def _hash01(salt: int, *keys: np.ndarray) -> np.ndarray:
    """A random number in [0, 1) per integer key tuple: each window gets one value, whichever pixels show it."""
    state = np.full(np.broadcast(*keys).shape, salt & 0xFFFFFFFF, np.uint32)
    for multiplier, key in zip((0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D), keys):
        # float -> int32 -> uint32 wraps negative keys instead of clipping them.
        state += np.asarray(key).astype(np.int32).view(np.uint32) * np.uint32(multiplier)
    # The 'lowbias32' finaliser spreads the sum's bits over the whole word.
    state ^= state >> 16
    state *= np.uint32(0x7FEB352D)
    state ^= state >> 15
    state *= np.uint32(0x846CA68B)
    state ^= state >> 16
    return state.astype(np.float32) * np.float32(2**-32)


def _light_surfaces(canvas: _Canvas, lights: list[_Light], ambient: Colour, step: int = 4) -> None:
    """Multiply the albedo of the ground and facades by the light falling on them.

    Light varies slowly across a surface, so it is computed on every ``step``-th pixel, where that pixel's ray
    meets its plane, and interpolated.
    """
    camera, first = canvas.camera, step // 2
    surface = canvas.surface[first::step, first::step]
    normal = np.array([n for n, _ in canvas.planes], np.float32)[surface]  # h×w×3, zero for the sky
    k = np.array([k for _, k in canvas.planes], np.float32)[surface]
    rows, cols = (np.arange(first, n, step, dtype=np.float32) + 0.5 for n in canvas.surface.shape)
    ray_x, ray_y = (cols[None, :] - camera.cx) / camera.focal, (camera.horizon - rows[:, None]) / camera.focal
    facing = normal[..., 0] * ray_x + normal[..., 1] * ray_y + normal[..., 2]  # n·ray, with ray_z = 1
    depth = np.maximum((k - normal[..., 1] * camera.eye) / np.where(facing == 0, 1, facing), 0)
    x, y = ray_x * depth, camera.eye + ray_y * depth
    coarse = _irradiance(x, y, depth, tuple(np.moveaxis(normal, -1, 0)), lights, ambient)
    light = cv2.resize(coarse, canvas.surface.shape[::-1], interpolation=cv2.INTER_LINEAR)
    canvas.radiance *= light  # the sky reflects nothing: its radiance is 0 and its light is emitted


def _paint_cutouts(canvas: _Canvas, cutouts: list[_Cutout], lights: list[_Light], ambient: Colour) -> None:
    cutouts = sorted(cutouts, key=lambda c: c.z, reverse=True)  # painter's order: far to near
    # Each is lit as a whole, from a point at chest height just in front of it.
    x, z = np.array([c.x for c in cutouts], np.float32), np.array([c.z - 0.2 for c in cutouts], np.float32)
    for cutout, irradiance in zip(cutouts, _irradiance(x, 1.0, z, (0, 0, -1), lights, ambient, wrap=0.6)):
        cutout.draw(canvas, irradiance)


# ------------------------------------------------------------------------------------------ lens and sensor


def _expose(canvas: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Linear light -> 8-bit RGB: lens bloom, lens blur, sensor noise, clipping and gamma."""
    width = canvas.labels.shape[1]
    light = canvas.radiance + canvas.emission + _bloom(canvas.emission)
    light = cv2.GaussianBlur(light, (0, 0), 0.6 * width / 1024 + 0.2)
    light *= np.float32(rng.uniform(1.2, 1.9))  # auto-exposure differs from frame to frame
    read, shot = rng.uniform(0.0005, 0.0015), rng.uniform(0.0002, 0.0008)
    noise = _GAUSSIAN_LUT[np.frombuffer(rng.bytes(light.size), np.uint8).reshape(light.shape)]
    light += noise * np.sqrt(np.float32(read**2) + np.float32(shot) * np.maximum(light, 0))
    return _GAMMA_LUT[(np.clip(light, 0, 1) * 65535).astype(np.uint16)]


def _bloom(emission: np.ndarray) -> np.ndarray:
    """Glow of bright sources, added in linear light: a tight core and a wide faint halo, blurred at 1/4 size."""
    height, width = emission.shape[:2]
    small = cv2.resize(emission, (max(width // 4, 1), max(height // 4, 1)), interpolation=cv2.INTER_AREA)
    pixel = width / 4 / 1024  # one full-size pixel of a 1024-wide image, in quarter-size pixels
    core, halo = cv2.GaussianBlur(small, (0, 0), 4 * pixel + 0.3), cv2.GaussianBlur(small, (0, 0), 40 * pixel)
    return cv2.resize(0.6 * core + 0.25 * halo, (width, height), interpolation=cv2.INTER_LINEAR)


# ------------------------------------------------------------------------------------------ public API


def render_night_scene(rng: np.random.Generator, *, width: int = 1024, height: int = 512) -> NightScene:
    """Render one random night street of ``width``×``height`` with its Cityscapes label-id map."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator such as np.random.default_rng(0), got {type(rng).__name__}")
    _check_size(width, height)
    canvas = _Canvas(_random_camera(rng, width, height))
    street = _random_street(rng)
    facades = _random_facades(rng, street)
    cutouts = _random_cutouts(rng, street)
    lights = [light for cutout in cutouts if (light := cutout.light()) is not None] + _random_ego_headlights(rng)
    _paint_sky(canvas, rng)
    _paint_ground(canvas, street)
    _paint_facades(canvas, facades, salt=int(rng.integers(2**31)))
    _light_surfaces(canvas, lights, street.ambient)
    _paint_cutouts(canvas, cutouts, lights, street.ambient)
    return NightScene(image=_expose(canvas, rng), label_ids=canvas.labels)


def render_night_frames(seed: int, count: int, *, width: int = 1024, height: int = 512) -> list[np.ndarray]:
    """The images (H×W×3 uint8 RGB) of ``count`` night scenes from one generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    return [render_night_scene(rng, width=width, height=height).image for _ in range(count)]


def write_nightcity(
    out_dir: str | Path, *, train: int = 8, val: int = 4, width: int = 1024, height: int = 512, seed: int = 0
) -> SyntheticDataset:
    """Write a synthetic data set in NightCity's released layout; the same seed writes the same bytes.

    ``out_dir/NightCity-images/images/{train,val}/<City>_<NNNN>.png`` holds the images,
    ``out_dir/NightCity-label/label/{train,val}/<City>_<NNNN>_labelIds.png`` the label ids and
    ``out_dir/NightCity-label/color/{train,val}/<City>_<NNNN>_color.png`` their Cityscapes colours.
    NNNN runs on from train into val, so no name repeats. ``out_dir`` must be new or empty. Image ``i`` is
    ``render_night_scene(np.random.default_rng(np.random.SeedSequence(seed).spawn(i + 1)[i]))``, whatever the counts,
    and the same in every layout.
    """

    def write(root: Path, split: str, index: int, scene: NightScene) -> None:
        name = f"{CITIES[index % len(CITIES)]}_{index:04d}"
        images, labels = root / "NightCity-images", root / "NightCity-label"
        _write_rgb(images / "images" / split / f"{name}.png", scene.image)
        _write_png(labels / "label" / split / f"{name}_labelIds.png", scene.label_ids)
        _write_rgb(labels / "color" / split / f"{name}_color.png", _colour(scene))

    return _write_dataset("nightcity", out_dir, train, val, width, height, seed, write)


def write_cityscapes(
    out_dir: str | Path, *, train: int = 8, val: int = 4, width: int = 1024, height: int = 512, seed: int = 0
) -> SyntheticDataset:
    """Write synthetic scenes in Cityscapes' layout (``leftImg8bit_trainvaltest.zip``, ``gtFine_trainvaltest.zip``)::

        out_dir/leftImg8bit/{train,val}/<city>/<city>_<NNNNNN>_000019_leftImg8bit.png
        out_dir/gtFine/{train,val}/<city>/<city>_<NNNNNN>_000019_gtFine_labelIds.png   (and _gtFine_color.png)

    Cities are the release's, train and val apart; the sequence number runs on from train into val, and 000019 is
    the frame Cityscapes annotates in each sequence. Otherwise as ``write_nightcity`` (night scenes, not day).
    """

    def write(root: Path, split: str, index: int, scene: NightScene) -> None:
        cities = CITYSCAPES_CITIES[split]
        city = cities[index % len(cities)]
        name = f"{city}_{index:06d}_000019"
        _write_rgb(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", scene.image)
        labels = root / "gtFine" / split / city
        _write_png(labels / f"{name}_gtFine_labelIds.png", scene.label_ids)
        _write_rgb(labels / f"{name}_gtFine_color.png", _colour(scene))

    return _write_dataset("cityscapes", out_dir, train, val, width, height, seed, write)


def write_acdc_night(
    out_dir: str | Path, *, train: int = 8, val: int = 4, width: int = 1024, height: int = 512, seed: int = 0
) -> SyntheticDataset:
    """Write synthetic scenes in the layout of ACDC's night condition (``rgb_anon_trainvaltest.zip`` and
    ``gt_trainval.zip`` unpacked side by side)::

        out_dir/rgb_anon/night/{train,val}/<sequence>/<sequence>_frame_<NNNNNN>_rgb_anon.png
        out_dir/gt/night/{train,val}/<sequence>/<sequence>_frame_<NNNNNN>_gt_labelTrainIds.png
            (and _gt_labelIds.png, _gt_labelColor.png)

    Sequences are GoPro recording names (``GOPR<NNNN>``), train and val apart; the frame number runs on from
    train into val. Otherwise as ``write_nightcity``.
    """

    def write(root: Path, split: str, index: int, scene: NightScene) -> None:
        sequences = ACDC_SEQUENCES[split]
        sequence = sequences[index % len(sequences)]
        name = f"{sequence}_frame_{index:06d}"
        _write_rgb(root / "rgb_anon" / "night" / split / sequence / f"{name}_rgb_anon.png", scene.image)
        _write_eth_labels(root / "gt" / "night" / split / sequence / name, scene)

    return _write_dataset("acdc-night", out_dir, train, val, width, height, seed, write)


def write_dark_zurich(
    out_dir: str | Path, *, train: int = 8, val: int = 4, width: int = 1024, height: int = 512, seed: int = 0
) -> SyntheticDataset:
    """Write synthetic scenes in Dark Zurich's layout (``Dark_Zurich_val_anon.zip`` and the night part of
    ``Dark_Zurich_train_anon.zip`` unpacked into one root)::

        out_dir/rgb_anon/val/night/GOPR0356/GOPR0356_frame_<NNNNNN>_rgb_anon.png
        out_dir/gt/val/night/GOPR0356/GOPR0356_frame_<NNNNNN>_gt_labelTrainIds.png
            (and _gt_labelIds.png, _gt_labelColor.png)
        out_dir/rgb_anon/train/night/<sequence>/<sequence>_frame_<NNNNNN>_rgb_anon.png     (no labels, as released)

    The release's val split is the one recording GOPR0356. Otherwise as ``write_nightcity``.
    """

    def write(root: Path, split: str, index: int, scene: NightScene) -> None:
        sequences = DARK_ZURICH_SEQUENCES[split]
        sequence = sequences[index % len(sequences)]
        name = f"{sequence}_frame_{index:06d}"
        _write_rgb(root / "rgb_anon" / split / "night" / sequence / f"{name}_rgb_anon.png", scene.image)
        if split == "val":
            _write_eth_labels(root / "gt" / split / "night" / sequence / name, scene)

    return _write_dataset("dark-zurich", out_dir, train, val, width, height, seed, write)


# The writers by the data set name that configs and the command line use.
WRITERS: dict[str, Callable[..., SyntheticDataset]] = {
    "nightcity": write_nightcity,
    "cityscapes": write_cityscapes,
    "acdc-night": write_acdc_night,
    "dark-zurich": write_dark_zurich,
}


def _write_dataset(
    dataset: str, out_dir: str | Path, train: int, val: int, width: int, height: int, seed: int,
    write: Callable[[Path, str, int, NightScene], None],
) -> SyntheticDataset:
    """Check the arguments, then render scene ``index`` of ``train + val`` and ``write(root, split, index, scene)``."""
    root = Path(out_dir)
    _check_size(width, height)
    if train < 0 or val < 0 or train + val < 1:
        raise ValueError(f"need train >= 0, val >= 0 and at least one image, got train={train}, val={val}")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"refusing to write the synthetic data set into {root}: it is not an empty directory")
    for index, child in enumerate(np.random.SeedSequence(seed).spawn(train + val)):
        scene = render_night_scene(np.random.default_rng(child), width=width, height=height)
        write(root, "train" if index < train else "val", index, scene)
    logger.info("wrote %d train and %d val synthetic scenes of %dx%d in %s's layout to %s", train, val, width,
                height, dataset, root)
    return SyntheticDataset(root=root, train=train, val=val, size=(width, height), dataset=dataset)


def _check_size(width: int, height: int) -> None:
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise ValueError(f"scene size must be at least {MIN_WIDTH}x{MIN_HEIGHT}, got {width}x{height}")


def _colour(scene: NightScene) -> np.ndarray:
    return colorize(label_id_to_train_id(scene.label_ids))


def _write_eth_labels(stem: Path, scene: NightScene) -> None:
    """The label files ACDC and Dark Zurich release for one image: train ids, label ids and colours."""
    _write_png(stem.with_name(f"{stem.name}_gt_labelTrainIds.png"), label_id_to_train_id(scene.label_ids))
    _write_png(stem.with_name(f"{stem.name}_gt_labelIds.png"), scene.label_ids)
    _write_rgb(stem.with_name(f"{stem.name}_gt_labelColor.png"), _colour(scene))


def _write_rgb(path: Path, image: np.ndarray) -> None:
    _write_png(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"OpenCV could not write {path}")

"""The synthetic world: scenes of coloured objects with co-occurrence structure, rendered as RGB images.

Why this shape: 32x32 images split into four 16x16 cells, at most one object per cell, so a tiny ViT
with 16-pixel patches sees each object in one patch and pretrains in a couple of minutes on a CPU.
Scenes have themes (kitchen, street, park, office) that make some objects likely together, so
"plausible but absent" objects exist, as in COCO. Every scene keeps its full annotation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

IMAGE_SIZE = 32
CELL = 16

THEMES: dict[str, tuple[str, ...]] = {
    "kitchen": ("cup", "fork", "plate", "bowl"),
    "street": ("car", "bus", "sign", "bike"),
    "park": ("dog", "tree", "bench", "ball"),
    "office": ("laptop", "chair", "lamp", "book"),
}
THEME_PLACE = {"kitchen": "kitchen", "street": "street", "park": "park", "office": "office"}
OBJECTS: tuple[str, ...] = tuple(o for objs in THEMES.values() for o in objs)
OBJECT_THEME = {o: t for t, objs in THEMES.items() for o in objs}

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 220, 40),
    "purple": (160, 60, 200),
    "white": (240, 240, 240),
}
SIZES = ("small", "large")
SIZE_PIXELS = {"small": 9, "large": 14}
CELLS = ("top left", "top right", "bottom left", "bottom right")
CELL_ORIGIN = {"top left": (0, 0), "top right": (0, 16), "bottom left": (16, 0), "bottom right": (16, 16)}
BACKGROUND = {"kitchen": (70, 55, 40), "street": (70, 70, 70), "park": (35, 75, 35), "office": (40, 40, 80)}
IN_THEME_PROB = 0.85


def _shape(name: str, n: int) -> np.ndarray:
    """A boolean n x n glyph; each object kind has its own silhouette."""
    y, x = np.mgrid[0:n, 0:n]
    u = (x + 0.5) / n * 2 - 1
    v = (y + 0.5) / n * 2 - 1
    r = np.sqrt(u**2 + v**2)
    shapes = {
        "disc": r < 0.9,
        "square": (abs(u) < 0.8) & (abs(v) < 0.8),
        "triangle": (v > -0.85) & (abs(u) < (v + 0.85) / 2),
        "diamond": abs(u) + abs(v) < 0.95,
        "plus": ((abs(u) < 0.3) | (abs(v) < 0.3)) & (r < 1.2),
        "cross": (abs(abs(u) - abs(v)) < 0.35) & (abs(u) < 0.9),
        "ring": (r < 0.95) & (r > 0.55),
        "hbar": abs(v) < 0.35,
        "vbar": abs(u) < 0.35,
        "frame": ((abs(u) < 0.9) & (abs(v) < 0.9)) & ~((abs(u) < 0.5) & (abs(v) < 0.5)),
        "dome": (r < 0.95) & (v > 0),
        "tee": ((v < -0.45) & (abs(u) < 0.95)) | (abs(u) < 0.3),
        "ell": ((u < -0.35) & (abs(v) < 0.95)) | ((v > 0.45) & (abs(u) < 0.95)),
        "star": ((abs(u) < 0.2) | (abs(v) < 0.2) | (abs(abs(u) - abs(v)) < 0.25)) & (r < 1.0),
        "checker": ((u > 0) ^ (v > 0)) & (abs(u) < 0.9) & (abs(v) < 0.9),
        "stripes": (np.floor((u + 1) * 2.5) % 2 == 0) & (abs(v) < 0.9),
    }
    return shapes[name]


OBJECT_SHAPE = dict(
    zip(
        OBJECTS,
        ("dome", "stripes", "ring", "disc", "hbar", "frame", "triangle", "plus",
         "star", "tee", "vbar", "checker", "square", "ell", "diamond", "cross"),
        strict=True,
    )
)


@dataclass(frozen=True)
class SceneObject:
    kind: str
    colour: str
    size: str
    cell: str


@dataclass
class Scene:
    """One image's full annotation."""

    id: str
    theme: str
    objects: list[SceneObject]
    seed: int
    extra: dict = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        return [o.kind for o in self.objects]

    def has(self, kind: str) -> bool:
        return kind in self.kinds

    def get(self, kind: str) -> SceneObject:
        for o in self.objects:
            if o.kind == kind:
                return o
        raise KeyError(f"scene {self.id} has no {kind}")

    def to_dict(self) -> dict:
        return {"id": self.id, "theme": self.theme, "seed": self.seed,
                "objects": [asdict(o) for o in self.objects]}


def sample_scene(rng: np.random.Generator, scene_id: str, n_objects: tuple[int, ...] = (2, 3),
                 theme: str | None = None) -> Scene:
    """Draw a scene: a theme, 2-3 distinct objects (mostly from the theme), colours, sizes, cells."""
    theme = theme or str(rng.choice(list(THEMES)))
    n = int(rng.choice(n_objects))
    kinds: list[str] = []
    while len(kinds) < n:
        pool = THEMES[theme] if rng.random() < IN_THEME_PROB else OBJECTS
        k = str(rng.choice(pool))
        if k not in kinds:
            kinds.append(k)
    cells = rng.permutation(len(CELLS))[:n]
    objects = [
        SceneObject(k, str(rng.choice(list(COLOURS))), str(rng.choice(SIZES)), CELLS[c])
        for k, c in zip(kinds, cells, strict=True)
    ]
    return Scene(scene_id, theme, objects, seed=int(rng.integers(0, 2**31 - 1)))


def object_scene(rng: np.random.Generator, scene_id: str, obj: SceneObject, theme: str | None = None) -> Scene:
    """A scene holding exactly one given object (the testbed's stand-in for a referring-box crop)."""
    return Scene(scene_id, theme or OBJECT_THEME[obj.kind], [obj], seed=int(rng.integers(0, 2**31 - 1)))


def with_object(scene: Scene, obj: SceneObject, scene_id: str) -> Scene:
    """The same scene with one more object, appended last, under the same render seed.

    Why appended last: `render` draws the background and then each object's jitter and colour noise
    in list order from the scene seed, so every pixel outside the new object's glyph is identical to
    the original image: a counterfactual that differs only by containing `obj`.
    """
    if scene.has(obj.kind):
        raise ValueError(f"scene {scene.id} already has a {obj.kind}")
    if obj.cell in {o.cell for o in scene.objects}:
        raise ValueError(f"scene {scene.id}: cell {obj.cell!r} is taken")
    return Scene(scene_id, scene.theme, [*scene.objects, obj], seed=scene.seed, extra=dict(scene.extra))


def with_changed(scene: Scene, kind: str, scene_id: str, **changes: str) -> Scene:
    """The same scene with its `kind` object changed (`colour=...` or `cell=...`), in place in the object
    list, under the same render seed.

    Why in place: `render` draws each object's jitter and colour noise in list order and in amounts that
    depend only on the size, so a recoloured object is the only pixels that change, and a moved one
    changes only its old and its new glyph: the counterfactual in which a "no"-answered question about
    that object is answered "yes".
    """
    if not scene.has(kind):
        raise ValueError(f"scene {scene.id} has no {kind}")
    unknown = set(changes) - {"colour", "cell"}
    if unknown:
        raise ValueError(f"with_changed changes colour or cell, got {sorted(unknown)}")
    if "cell" in changes and changes["cell"] in {o.cell for o in scene.objects if o.kind != kind}:
        raise ValueError(f"scene {scene.id}: cell {changes['cell']!r} is taken")
    objects = [replace(o, **changes) if o.kind == kind else o for o in scene.objects]
    return Scene(scene_id, scene.theme, objects, seed=scene.seed, extra=dict(scene.extra))


def render(scene: Scene) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """RGB uint8 image (H, W, 3) and a boolean mask per object kind. Deterministic given the scene."""
    rng = np.random.default_rng(scene.seed)
    bg = np.array(BACKGROUND[scene.theme], dtype=np.float32)
    img = np.clip(bg + rng.normal(0, 8, (IMAGE_SIZE, IMAGE_SIZE, 3)), 0, 255)
    masks: dict[str, np.ndarray] = {}
    for obj in scene.objects:
        n = SIZE_PIXELS[obj.size]
        glyph = _shape(OBJECT_SHAPE[obj.kind], n)
        oy, ox = CELL_ORIGIN[obj.cell]
        jy, jx = rng.integers(0, CELL - n + 1, size=2) if n < CELL else (0, 0)
        jy = min(max(jy, (CELL - n) // 2 - 2), (CELL - n) // 2 + 2)
        jx = min(max(jx, (CELL - n) // 2 - 2), (CELL - n) // 2 + 2)
        mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
        mask[oy + jy: oy + jy + n, ox + jx: ox + jx + n] = glyph
        colour = np.array(COLOURS[obj.colour], dtype=np.float32) + rng.normal(0, 6, 3)
        img[mask] = colour
        masks[obj.kind] = mask
    return img.astype(np.uint8), masks



def pair_scene(rng: np.random.Generator, scene_id: str, kind: str | None = None) -> tuple[Scene, int, int]:
    """A scene with two objects of one kind in different colours (and maybe one other object).
    Returns the scene and the indices of the two same-kind objects.

    Why by hand: `sample_scene` draws each kind at most once, and referring expressions need two objects
    that only their colour or cell tells apart."""
    kind = kind or str(rng.choice(OBJECTS))
    c1, c2 = rng.choice(list(COLOURS), size=2, replace=False)
    cells = [CELLS[i] for i in rng.permutation(len(CELLS))]
    objs = [SceneObject(kind, str(c1), str(rng.choice(SIZES)), cells[0]),
            SceneObject(kind, str(c2), str(rng.choice(SIZES)), cells[1])]
    if rng.random() < 0.5:
        other = str(rng.choice([k for k in OBJECTS if k != kind]))
        objs.append(SceneObject(other, str(rng.choice(list(COLOURS))), str(rng.choice(SIZES)), cells[2]))
    return Scene(scene_id, OBJECT_THEME[kind], objs, seed=int(rng.integers(0, 2**31 - 1))), 0, 1


def object_masks(scene: Scene) -> tuple[np.ndarray, list[np.ndarray]]:
    """The image and one mask per object, in list order (same-kind objects included).

    Why each mask from a prefix of the scene: `render` keys masks by kind, so two objects of one kind
    share a key; it draws each object's jitter in list order from the scene seed, so rendering the
    first i objects gives the i-th object exactly the pixels it has in the full image."""
    image, _ = render(scene)
    masks = []
    for i, obj in enumerate(scene.objects):
        prefix = Scene(scene.id, scene.theme, scene.objects[: i + 1], seed=scene.seed)
        masks.append(render(prefix)[1][obj.kind])
    return image, masks

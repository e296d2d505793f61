"""The one registry of anatomical regions.

Training, evaluation and the dashboard all read region names, colours and the
study's default hyperparameters from here, so a region added or renamed in
one place changes everywhere.

"left" and "right" are the PATIENT's sides: the left lung appears on the
right-hand side of a PA radiograph.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hyperparameters:
    """Training settings for one region (the study's Bayesian-optimisation winners)."""

    optimizer: str
    learning_rate: float
    batch_size: int

    def as_dict(self) -> dict:
        return {"optimizer": self.optimizer, "learning_rate": self.learning_rate,
                "batch_size": self.batch_size}


@dataclass(frozen=True)
class JaccardAnchors:
    """What a region's Jaccard (at 1024 x 1024, cases not trained on) is judged against:
    the second human observer of the SCR database (van Ginneken et al., Med Image
    Anal 2006), the best published result under the SCR protocol, and this
    project's target. Lungs and clavicles are one figure for both sides."""

    human_observer: float
    best_published: float
    target: float


LUNG_ANCHORS = JaccardAnchors(human_observer=0.946, best_published=0.961, target=0.96)
HEART_ANCHORS = JaccardAnchors(human_observer=0.878, best_published=0.906, target=0.91)
CLAVICLE_ANCHORS = JaccardAnchors(human_observer=0.896, best_published=0.868, target=0.90)


@dataclass(frozen=True)
class Region:
    key: str                      # file-system and API name, e.g. "left_lung"
    display_name: str             # what a user reads, e.g. "Left lung"
    colour: tuple[int, int, int]  # RGB overlay colour, fixed across every view
    study: Hyperparameters = field(repr=False)
    lateral: bool = False         # has a left/right counterpart (flip tests swap it)
    counterpart: str | None = None
    # Default training field of view, [top, bottom, left, right] as fractions of
    # the image (None: the whole image). Clavicles are thin: seeing only the
    # upper half on their own side doubles their resolution at the same cost.
    # Bounds with margin: over the 106 odd-fold SCR cases the clavicles span
    # rows 4-31% and columns 16-49% (right) / 51-84% (left) of the image.
    field_of_view: tuple[float, float, float, float] | None = None
    anchors: JaccardAnchors | None = field(default=None, repr=False)

    @property
    def hex_colour(self) -> str:
        return hex_colour(self.colour)


def hex_colour(rgb: tuple[int, int, int]) -> str:
    """(230, 159, 0) -> '#e69f00', for HTML and plotly."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


# Colours: colour-blind-safe (Okabe-Ito) hues, distinct on a grey radiograph.
REGIONS: dict[str, Region] = {
    r.key: r
    for r in (
        Region("heart", "Heart", (213, 94, 0), Hyperparameters("sgd", 0.07879, 1),
               anchors=HEART_ANCHORS),
        Region("left_clavicle", "Left clavicle", (240, 228, 66),
               Hyperparameters("sgd", 0.10000, 1), True, "right_clavicle", (0.0, 0.5, 0.4, 1.0),
               CLAVICLE_ANCHORS),
        Region("left_lung", "Left lung", (0, 114, 178),
               Hyperparameters("sgd", 0.00358, 1), True, "right_lung", anchors=LUNG_ANCHORS),
        Region("right_clavicle", "Right clavicle", (204, 121, 167),
               Hyperparameters("rmsprop", 0.00035, 1), True, "left_clavicle", (0.0, 0.5, 0.0, 0.6),
               CLAVICLE_ANCHORS),
        Region("right_lung", "Right lung", (0, 158, 115),
               Hyperparameters("sgd", 0.00139, 1), True, "left_lung", anchors=LUNG_ANCHORS),
    )
}

REGION_KEYS: tuple[str, ...] = tuple(REGIONS)

# Folder names in the original SCR distribution use spaces ("left lung").
def region_folder_names(key: str) -> tuple[str, ...]:
    return (key, key.replace("_", " "), key.replace("_", "-"))


def get_region(key: str) -> Region:
    """Look a region up by key, accepting 'left lung' / 'left-lung' spellings."""
    norm = key.strip().lower().replace(" ", "_").replace("-", "_")
    if norm not in REGIONS:
        raise KeyError(f"unknown region {key!r}; expected one of {', '.join(REGION_KEYS)}")
    return REGIONS[norm]

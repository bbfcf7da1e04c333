"""The names of the line nuisances (`inspector.nuisance`), kept apart from the code that applies
them so that settings can check a name without loading OpenCV."""

NAMES = (
    "light-radial",
    "light-gradient",
    "light-spot",
    "position",
    "zoom",
    "defocus",
    "noise",
    "jpeg",
    "resolution",
    "dust",
)

# The nuisances that move the part in the photo (and not its mask, for pixel figures).
MOVING = ("position", "zoom")

# The nuisances that leave the part where it is: copies under them teach nothing about a part's
# place, so a pipeline that judges a part out of place as a defect can train on them.
IN_PLACE = tuple(name for name in NAMES if name not in MOVING)

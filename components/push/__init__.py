"""Push: atomic, versioned publication of a blessed model with a push.json manifest."""

from flywheel.components.push import spec

__all__ = ["spec"]

"""Push: atomic, versioned publication of a blessed model with a push.json manifest."""

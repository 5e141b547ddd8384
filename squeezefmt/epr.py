"""Compatibility name for code written against squeezefmt 0.1: use :mod:`squeezefmt.presets.epr`."""
from .presets.epr import *  # noqa: F401,F403
from .presets.epr import __all__, epr_policy, preset_name, wants_epr  # noqa: F401

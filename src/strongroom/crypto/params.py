"""Compatibility name: mechanism parameters live in :mod:`strongroom.mechanism_params`."""

from ..mechanism_params import *  # noqa: F403
from ..mechanism_params import Mechanism, Parameter  # noqa: F401

"""Compatibility name: the mechanism catalogue lives in :mod:`strongroom.mechanism_catalogue`."""

from ..mechanism_catalogue import *  # noqa: F403
from ..mechanism_catalogue import MECHANISMS, MechanismInfo, info  # noqa: F401

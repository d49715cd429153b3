"""What an application no user is logged in to may do with objects, and how much of the node it may hold.

The one rule (PKCS#11 3.0 §4.4 and §5.6's public session): without a logged-in crypto user an application may
create, copy, change and destroy only **public session objects**: ``CKA_TOKEN`` false and ``CKA_PRIVATE`` false,
of any class (keys too: generated, unwrapped, derived). Anything else (a token object of any class, a private
object) needs a crypto user, who becomes its owner.

Public session objects cost the node memory and nothing else, so they are capped, per connection and per
node, in count and in bytes (:class:`PublicObjectBudget`, kept by the node's repository with the session
objects themselves). Past a cap the creation answers ``CKR_DEVICE_MEMORY`` and changes nothing. An object's
size is its attribute values and key material plus ``SESSION_OBJECT_OVERHEAD_BYTES`` for its record, so
many small objects are charged for what they really cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import DeviceMemory
from ..objects.model import HsmObject
from ..vocab import CKA

PUBLIC_SESSION_OBJECTS_PER_CONNECTION = 64
PUBLIC_SESSION_OBJECT_BYTES_PER_CONNECTION = 1 << 20  # 1 MiB
PUBLIC_SESSION_OBJECTS_PER_NODE = 1024
PUBLIC_SESSION_OBJECT_BYTES_PER_NODE = 8 << 20  # 8 MiB
SESSION_OBJECT_OVERHEAD_BYTES = 2048  # the record, its attribute dict and handle beside the values

def open_to_public_sessions(attrs: Mapping[CKA, Any]) -> bool:
    """Whether an object with these attributes may be made, changed or destroyed without a login: a public
    session object (``CKA_TOKEN`` and ``CKA_PRIVATE`` false), of any class."""
    return not attrs.get(CKA.TOKEN) and not attrs.get(CKA.PRIVATE)


def object_bytes(obj: HsmObject) -> int:
    """What ``obj`` costs the node's memory, in bytes: its values plus ``SESSION_OBJECT_OVERHEAD_BYTES``."""
    return SESSION_OBJECT_OVERHEAD_BYTES + len(obj.material) + sum(_value_bytes(v) for v in obj.attrs.values())


def _value_bytes(value: Any) -> int:
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, Mapping):  # an attribute template (CKA_WRAP_TEMPLATE …)
        return sum(8 + _value_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_value_bytes(v) for v in value)
    return 8


class PublicObjectBudget:
    """The count and bytes of public session objects each connection and the node hold.

    Not thread-safe: the repository calls it holding the node's lock, with the session objects it guards.

    Args:
        objects_per_connection, bytes_per_connection, objects_per_node, bytes_per_node: the caps; the module's
            constants unless a test gives smaller ones.
    """

    def __init__(self, *, objects_per_connection: int = PUBLIC_SESSION_OBJECTS_PER_CONNECTION,
                 bytes_per_connection: int = PUBLIC_SESSION_OBJECT_BYTES_PER_CONNECTION,
                 objects_per_node: int = PUBLIC_SESSION_OBJECTS_PER_NODE,
                 bytes_per_node: int = PUBLIC_SESSION_OBJECT_BYTES_PER_NODE) -> None:
        self.objects_per_connection, self.bytes_per_connection = objects_per_connection, bytes_per_connection
        self.objects_per_node, self.bytes_per_node = objects_per_node, bytes_per_node
        self.held: dict[int, tuple[int, int]] = {}  # application id → (objects, bytes)
        self.objects = self.bytes = 0

    def check(self, app_id: int, objects: int, size_bytes: int) -> None:
        """Whether ``objects`` more public session objects of ``size_bytes`` in all fit for application
        ``app_id`` (negative amounts always fit: an object shrank or went).

        Raises:
            DeviceMemory: ``CKR_DEVICE_MEMORY`` past a per-connection or per-node cap.
        """
        held_objects, held_bytes = self.held.get(app_id, (0, 0))
        if objects > 0 and held_objects + objects > self.objects_per_connection:
            raise DeviceMemory(f"a connection holds at most {self.objects_per_connection} public session objects")
        if size_bytes > 0 and held_bytes + size_bytes > self.bytes_per_connection:
            raise DeviceMemory(f"a connection's public session objects hold at most {self.bytes_per_connection} "
                               "bytes")
        if objects > 0 and self.objects + objects > self.objects_per_node:
            raise DeviceMemory(f"this HSM holds at most {self.objects_per_node} public session objects")
        if size_bytes > 0 and self.bytes + size_bytes > self.bytes_per_node:
            raise DeviceMemory(f"this HSM's public session objects hold at most {self.bytes_per_node} bytes")

    def add(self, app_id: int, objects: int, size_bytes: int) -> None:
        """Count ``objects`` (negative: fewer) of ``size_bytes`` for application ``app_id``; :meth:`check` first."""
        held_objects, held_bytes = self.held.get(app_id, (0, 0))
        held_objects, held_bytes = held_objects + objects, held_bytes + size_bytes
        if held_objects > 0:
            self.held[app_id] = (held_objects, held_bytes)
        else:
            self.held.pop(app_id, None)
        self.objects += objects
        self.bytes += size_bytes

    def clear(self) -> None:
        """Forget every object (zeroisation drops them all)."""
        self.held.clear()
        self.objects = self.bytes = 0

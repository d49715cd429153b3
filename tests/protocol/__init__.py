"""Unit tests of the wire protocol (src/strongroom/protocol/)."""

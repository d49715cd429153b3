"""Unit tests of the SDK (src/strongroom/client/)."""

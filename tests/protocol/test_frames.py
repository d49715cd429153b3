"""Length-prefixed frames (protocol/frames.py): a 4-byte big-endian length, then the body."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.errors import ArgumentsBad
from strongroom.protocol import DEFAULT_MAX_FRAME_BYTES, FrameReader, FrameTooLarge, encode_frame
from strongroom.vocab import CKR


def test_a_frame_is_the_body_after_its_big_endian_length():
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"


@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(min_value=1, max_value=64))
def test_frames_come_back_whole_and_in_order_however_the_stream_is_cut(bodies, chunk_bytes):
    stream = b"".join(encode_frame(b) for b in bodies)
    reader = FrameReader()
    out = []
    for start in range(0, len(stream), chunk_bytes):
        out += reader.feed(stream[start:start + chunk_bytes])
    assert out == bodies
    assert reader.pending_bytes == 0


def test_a_partial_frame_waits_for_the_rest():
    reader = FrameReader()
    frame = encode_frame(b"hello")
    assert reader.feed(frame[:2]) == []  # half a header
    assert reader.feed(frame[2:6]) == []  # a header and one byte of body
    assert reader.pending_bytes == 6
    assert reader.feed(frame[6:] + encode_frame(b"x")[:3]) == [b"hello"]
    assert reader.pending_bytes == 3
    assert reader.feed(b"\x01x") == [b"x"]


def test_a_frame_of_exactly_the_maximum_is_taken():
    reader = FrameReader(max_frame_bytes=8)
    assert reader.feed(encode_frame(b"12345678")) == [b"12345678"]


def test_an_oversized_frame_is_refused_from_its_header_alone():
    reader = FrameReader(max_frame_bytes=8)
    with pytest.raises(FrameTooLarge) as caught:
        reader.feed(b"\x00\x00\x00\x09")  # no body sent: the header is enough
    assert isinstance(caught.value, ArgumentsBad) and caught.value.ckr == CKR.ARGUMENTS_BAD
    assert "9 bytes" in str(caught.value) and "maximum of 8" in str(caught.value)


def test_the_default_maximum_holds_16_mib_of_data():
    reader = FrameReader()
    assert reader.max_frame_bytes == DEFAULT_MAX_FRAME_BYTES > 16 * 1024 * 1024
    with pytest.raises(FrameTooLarge):
        reader.feed((DEFAULT_MAX_FRAME_BYTES + 1).to_bytes(4, "big"))


def test_frames_before_an_oversized_one_are_not_returned_once_it_is_refused():
    # the connection cannot be resynchronised: the caller closes it, so nothing of that feed is handed on
    reader = FrameReader(max_frame_bytes=8)
    with pytest.raises(FrameTooLarge):
        reader.feed(encode_frame(b"ok") + b"\xff\xff\xff\xff")
    with pytest.raises(FrameTooLarge):  # it stays refused: no later feed hands on a frame from behind it
        reader.feed(encode_frame(b"x"))

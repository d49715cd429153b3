"""The p11-kit RPC wire format against byte sequences seen from real p11-kit clients."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from strongroom.pkcs11.wire import FrameReader, Reader, WireError, Writer, encode_frame, error_body, fixed_field
from strongroom.vocab import CKA, CKO


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("|", ""))


def test_error_frame_for_a_wrong_pin():
    assert error_body(0xA0) == h("00000000 00000001 75 00000000000000a0")


def test_find_template_from_pkcs11_tool():
    body = h("00000002 | 00000000 01 00000008 0000000000000003 | 00000102 01 00000001 00000001 33")
    reader = Reader(body)
    assert reader.template() == [(CKA.CLASS, CKO.PRIVATE_KEY), (CKA.ID, b"3")]
    reader.done()
    assert Writer().template([(int(CKA.CLASS), 3), (int(CKA.ID), b"3")]).bytes() == body


def test_booleans_and_unavailable_values():
    body = Writer().template([(int(CKA.TOKEN), True), (int(CKA.VALUE), None), (int(CKA.LABEL), b"k")]).bytes()
    assert body == h("00000003 00000001 01 00000001 01 00000011 00 00000003 01 00000001 00000001 6b")
    assert Reader(body).template() == [(CKA.TOKEN, True), (CKA.VALUE, None), (CKA.LABEL, b"k")]


def test_byte_arrays_lengths_and_null_pointers():
    reader = Reader(h("01 00000003 616263 | 00 00000040 | 01 ffffffff"))
    assert reader.byte_array() == (b"abc", 3)
    assert reader.byte_array() == (None, 64)  # only a length: the caller's NULL buffer
    assert reader.byte_array() == (None, 0)  # NULL pointer of length 0 (p11-kit >= 0.25)
    reader.done()
    assert Writer().byte_array(None, 256).bytes() == h("00 00000100")


def test_buffer_sizes_tell_a_size_query_from_an_empty_buffer():
    reader = Reader(h("00000000 ffffffff 00000020"))
    assert [reader.buffer_size(), reader.buffer_size(), reader.buffer_size()] == [None, 0, 32]


def test_frames_survive_any_segmentation():
    frames = encode_frame(0x10, b"\x00\x00\x00\x03", b"client") + encode_frame(0x11, error_body(5))
    reader = FrameReader()
    got = []
    for i in range(len(frames)):
        got += reader.feed(frames[i:i + 1])
    assert got == [(0x10, b"client", b"\x00\x00\x00\x03"), (0x11, b"", error_body(5))]


def test_an_oversized_frame_is_skipped_unbuffered_and_the_stream_stays_in_step():
    reader = FrameReader(max_frame_bytes=1024)
    big = encode_frame(1, b"x" * 2048)
    assert reader.feed(big[:500]) == [(1, b"", None)]  # announced by its header: reported at once
    assert len(reader.buffer) == 0 and reader.skipping == 2048 - 488
    assert reader.feed(big[500:] + encode_frame(2, b"next")) == [(2, b"", b"next")]


@given(st.binary(max_size=200))
def test_any_body_is_read_or_refused_with_a_wire_error(body):
    reader = Reader(body)
    try:
        reader.template()
        reader.attribute_buffers()
        reader.attribute_requests()
        reader.ulong_array()
        reader.byte_array()
    except WireError:
        pass


def test_a_fixed_field_is_cut_on_a_character_boundary_then_blank_padded():
    label = "é" * 19 + "x"  # 39 bytes: a cut at 32 would keep half of the 16th "é"
    assert fixed_field(label, 32) == ("é" * 16).encode()
    assert fixed_field("€" * 11, 32) == ("€" * 10).encode() + b"  "  # 33 bytes: the 11th "€" (3 bytes) goes
    assert fixed_field("a" + "😀" * 8, 32) == ("a" + "😀" * 7).encode() + b"   "  # 4-byte characters
    assert fixed_field("é" * 16, 32) == ("é" * 16).encode()  # exactly full
    assert fixed_field("Strongroom", 16) == b"Strongroom      "
    assert fixed_field("", 16) == b" " * 16
    assert Writer().padded(label, 32).bytes() == h("00000020") + ("é" * 16).encode()


WRAP = "40000211"
DERIVE = "40000213"


def test_attribute_requests_in_each_layout_of_p11_kit():
    # 0.24.1 .. 0.25.3: no nested list
    assert Reader(h(f"00000002 00000003 00000000 | {WRAP} 00000030")).attribute_requests() == (
        [(3, 0, None), (0x40000211, 48, None)], False)
    # 0.25.4, 0.25.5: a nested list after every array entry, NULL ones included
    assert Reader(h(f"00000001 {WRAP} 00000000 00000000")).attribute_requests() == ([(0x40000211, 0, [])], True)
    assert Reader(h(f"00000001 {WRAP} 00000030 00000002 00000000 00000000 00000000 00000008")).attribute_requests() \
        == ([(0x40000211, 48, [(0, 0, None), (0, 8, None)])], True)
    # 0.25.6 and later: only after a non-NULL buffer
    assert Reader(h(f"00000002 {WRAP} 00000000 | {DERIVE} 00000018 00000001 00000003 00000005")
                  ).attribute_requests() == ([(0x40000211, 0, None), (0x40000213, 24, [(3, 5, None)])], True)


def test_a_derive_template_sent_as_raw_memory_is_kept_as_bytes():
    # p11-kit 0.24.1 knows CKA_DERIVE_TEMPLATE as no array: declared 24, then a byte string of 24 (pointers)
    raw = bytes(range(24))
    assert Reader(h(f"00000001 {DERIVE} 01 00000018 00000018") + raw).template() == [(0x40000213, raw)]
    assert Reader(h(f"00000001 {DERIVE} 01 00000018 00000001 00000003 01 00000001 00000001 61")).template() == [
        (0x40000213, [(3, b"a")])]

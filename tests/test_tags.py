"""Buffer tags: only the key holder can make tags that match, and only for the very buffers."""
import numpy as np

from pxmagic.tags import MAC_MIN, matches, tag_frames

KEY = b"k" * 32
SMALL, LARGE = b"function", memoryview(np.arange(1_000_000))


def test_tags_match_their_own_buffers_only():
    frames = [SMALL, LARGE, bytearray(b"")]
    tags = tag_frames(KEY, frames)
    assert [t.split(":")[0] for t in tags] == ["sha256", "poly1305", "sha256"]
    assert matches(KEY, tags, frames)
    assert not matches(KEY, tags, [b"functioN", LARGE, b""])
    changed = np.arange(1_000_000)
    changed[-1] = 0
    assert not matches(KEY, tags, [SMALL, memoryview(changed), b""])
    assert not matches(KEY, tags[:2], frames)
    assert not matches(KEY, [tags[1], tags[0], tags[2]], frames)


def test_a_large_buffers_tag_needs_the_key():
    [tag] = tag_frames(KEY, [LARGE])
    assert matches(KEY, [tag], [LARGE])
    assert not matches(b"x" * 32, [tag], [LARGE])


def test_each_message_gets_fresh_one_time_keys():
    """Poly1305 is only safe if no key tags two buffers: the same buffer gets a new nonce each time."""
    first, second = tag_frames(KEY, [LARGE]), tag_frames(KEY, [LARGE])
    assert first[0].split(":")[1] != second[0].split(":")[1]
    assert first != second


def test_malformed_tags_are_refused_not_raised():
    good = tag_frames(KEY, [LARGE])[0]
    scheme, nonce, tag = good.split(":")
    small_tag = tag_frames(KEY, [SMALL])[0]
    for bad in (None, "tags", [None], [123], [f"sha256:{tag}"], [f"{scheme}:zz:{tag}"], [f"{scheme}:{nonce}"],
                [f"{scheme}:{nonce[:-2]}:{tag}"], [f"{scheme}:{nonce}:{tag[:-2]}"], [small_tag]):
        assert not matches(KEY, bad, [LARGE]), bad
    assert not matches(KEY, [good], [b"x" * (MAC_MIN - 1)]), "a small buffer is never taken on a MAC"

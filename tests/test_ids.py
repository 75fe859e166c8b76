"""ids: resource ids and PSKs drawn uniformly from their alphabets."""

from __future__ import annotations

import re
from collections import Counter

from vpngw import ids


def test_resource_ids_and_psks_have_the_documented_shape() -> None:
    for _ in range(200):
        assert re.fullmatch(r"vco-[a-z0-9]{21}", ids.new_resource_id("vco"))
        assert re.fullmatch(r"[A-Za-z0-9]{16}", ids.new_psk())
    assert len({ids.new_resource_id("vpn") for _ in range(1000)}) == 1000


def test_every_character_is_equally_likely() -> None:
    """An alphabet whose size does not divide 256 (36, 62, 100) must not favour its first
    characters: 256 % 100 = 56, so a plain ``byte % 100`` would draw 0-55 a third more often."""
    alphabet = "".join(chr(0x100 + n) for n in range(100))
    counts = Counter(ids.random_string(alphabet, 200_000))
    assert set(counts) == set(alphabet)
    expected = 200_000 / len(alphabet)
    # Each count is binomial (sd about 44 here); 4 sd either side, far below the 33 % bias.
    assert all(abs(count - expected) < 180 for count in counts.values()), counts.most_common(3)

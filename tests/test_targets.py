"""Which engines ``targets`` mean, without a cluster."""
import pytest

from pxmagic.client.targets import resolve_targets

IDS = [0, 1, 3]


@pytest.mark.parametrize("targets, expected", [
    (None, ([0, 1, 3], False)), ("all", ([0, 1, 3], False)), (3, ([3], True)),
    (slice(1, None), ([1, 3], False)), ([3, 0], ([3, 0], False)), (range(2), ([0, 1], False)),
])
def test_targets_name_engines(targets, expected):
    assert resolve_targets(targets, IDS) == expected


@pytest.mark.parametrize("targets, error, says", [
    (2, IndexError, "no engine 2"), ([0, 0], ValueError, "repeat engine 0"), ([True], TypeError, "boolean"),
    (True, TypeError, "not True"), ("0", TypeError, "not '0'"), (slice(5, None), IndexError, "selects no engine"),
    ([0, 7], IndexError, r"no engine \[7\]"),
])
def test_bad_targets_say_what_is_wrong(targets, error, says):
    with pytest.raises(error, match=says):
        resolve_targets(targets, IDS)

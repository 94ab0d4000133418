"""When an answer to a ranged read is the range asked (providers.base.wrong_range, which
every adapter's ranged read applies), on the answers real stores give and broken ones."""

from __future__ import annotations

import pytest

from providers.base import wrong_range


@pytest.mark.parametrize(
    ("content_range", "start", "end"),
    [
        ("bytes 50-59/100", 50, 60),
        ("Bytes 50-59/100", 50, 60),  # the unit is case-insensitive (RFC 9110)
        ("bytes 50-99/100", 50, None),  # to the end
        ("bytes 50-79/80", 50, 100),  # the object is shorter: the reader reports it
        ("bytes 0--1/0", 0, None),  # Azurite, for an empty blob
        ("bytes 50-59/*", 50, 60),  # the total unknown
        (None, 0, 100),  # the whole object from byte 0: the reader catches bytes past 100
    ],
)
def test_answers_that_are_the_range_asked(
    content_range: str | None, start: int, end: int | None
) -> None:
    assert wrong_range(content_range, start, end) is None


@pytest.mark.parametrize(
    ("content_range", "start", "end"),
    [
        ("bytes 0-9/100", 50, 60),  # another range of the same length
        ("bytes 50-69/100", 50, 60),  # longer than asked, not at the end
        ("bytes 50-54/100", 50, 60),  # shorter, not at the end
        ("bytes 50-99/50", 50, 60),  # past its own total
        (None, 50, 60),  # the whole object for a range further in
        ("bytes */100", 50, 60),  # unreadable
        ("items 50-59/100", 50, 60),
    ],
)
def test_answers_with_other_bytes(content_range: str | None, start: int, end: int | None) -> None:
    wrong = wrong_range(content_range, start, end)
    assert wrong is not None and "bytes 50-59" in wrong

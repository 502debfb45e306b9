"""The short path's JSON reads and writes what the json module does."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailban.control import lite_json

_scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text() | \
    st.floats(allow_nan=False, allow_infinity=False)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                       max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(_values, st.booleans(), st.sampled_from([None, 2]))
def test_reads_what_json_writes(value: object, ascii_only: bool, indent: int | None) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    assert lite_json.loads(text) == json.loads(text)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), st.none() | st.booleans() | st.integers() | st.text(),
                       max_size=5))
def test_writes_what_json_reads(obj: dict[str, object]) -> None:
    assert json.loads(lite_json.dumps(obj)) == obj


def test_a_pair_of_utf16_halves_is_one_character() -> None:
    assert lite_json.loads('"\\ud83d\\ude00"') == "\U0001f600"


@pytest.mark.parametrize("bad", ['{"a":1', '{"a" 1}', '[1,]x', '"\\x"', '"a\nb"', "tru", "",
                                 '{"a":1}}', '"\\u12"'])
def test_refuses_what_is_not_json(bad: str) -> None:
    with pytest.raises(ValueError):
        lite_json.loads(bad)
    with pytest.raises(ValueError):
        json.loads(bad)

"""The patch format: apply(old, diff(old, new)) == new, and apply never mutates its input."""

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import patch

json_scalars = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5)
json_docs = st.recursive(
    json_scalars,
    lambda inner: (st.lists(inner, max_size=5)
                   | st.dictionaries(st.text(max_size=4), inner, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=400)
@given(json_docs, json_docs)
def test_apply_of_diff_reproduces_new(old, new):
    before = copy.deepcopy(old)
    assert patch.apply(old, patch.diff(old, new)) == new
    assert old == before


def test_ball_sized_change_is_small():
    b = {"name": "B", "runs": 6}
    old = {"innings": [{"runs": 10, "batting": [{"name": "A", "runs": 4}, b]}]}
    new = {"innings": [{"runs": 14, "batting": [{"name": "A", "runs": 8}, b]}]}
    assert patch.diff(old, new) == [
        ["n", ["innings", 0], [["s", ["batting", 0, "runs"], 8], ["s", ["runs"], 14]]],
    ]


def test_scalars_of_one_object_merge_and_windows_slide():
    balls = ["1", "4", "W", "2", "1lb", "6", "0", "1", "1", "4", "2nb", "1"]
    old = {"bowler": {"runs": 20, "balls": 15, "name": "X"}, "last": balls}
    new = {"bowler": {"runs": 24, "balls": 16, "name": "X"}, "last": [*balls[1:], "4"]}
    assert patch.diff(old, new) == [
        ["m", ["bowler"], {"runs": 24, "balls": 16}],
        ["n", ["last"], [["h", [], 1], ["a", [], ["4"]]]],
    ]


def test_a_change_never_costs_more_than_setting_the_value():
    assert patch.diff({"batters": ["A", "B"]}, {"batters": ["B", "C"]}) == [
        ["s", ["batters"], ["B", "C"]]]


def test_growth_is_an_append_and_shrink_a_truncate():
    assert patch.diff({"x": [1, 2]}, {"x": [1, 2, 3]}) == [["a", ["x"], [3]]]
    assert patch.diff({"x": [1, 2, 3]}, {"x": [1]}) == [["t", ["x"], 1]]


@pytest.mark.parametrize("bad", [
    "x", ["x"], [["q", []]], [["s", "innings", 1]], [["d", []]], [["a", [], [1]]],
    [["s", ["nope", "deeper"], 1]], [["a", ["runs"], [1]]], [["t", ["list"], 9]],
    [["h", ["list"], True]], [["d", ["list", 0]]], [["m", ["list"], {"a": 1}]],
    [["m", [], [1]]], [["n", ["missing"], []]], [["n", ["list"], [["s", ["k"], 1]]]],
])
def test_bad_patches_raise_patch_error(bad):
    with pytest.raises(patch.PatchError):
        patch.apply({"runs": 1, "list": [1, 2]}, bad)

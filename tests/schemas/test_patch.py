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


balls = st.lists(st.sampled_from(["1", "•", "4", "W"]), max_size=8)


@settings(max_examples=400)
@given(balls, balls, st.integers(0, 3))
def test_windows_and_reorderings_of_few_distinct_items(old, new, shift):
    # Few distinct items make slides, picks and item edits all look plausible at once.
    for before, after in ((old, new), (old, [*old[shift:], *new]), (old, old[::-1])):
        assert patch.apply({"x": before}, patch.diff({"x": before}, {"x": after})) == {"x": after}


def test_ball_sized_change_is_small():
    b = {"name": "B", "runs": 6}
    old = {"innings": [{"runs": 10, "batting": [{"name": "A", "runs": 4}, b]}]}
    new = {"innings": [{"runs": 14, "batting": [{"name": "A", "runs": 8}, b]}]}
    # Keys that already exist are named by rank (sorted: "batting" 0, "runs" 1).
    assert patch.diff(old, new) == [
        ["n", ["innings", 0], [["k", ["batting", 0], [1, 8]], ["k", [], [1, 14]]]],
    ]


def test_scalars_of_one_object_merge_and_windows_slide():
    balls = ["1", "4", "W", "2", "1lb", "6", "0", "1", "1", "4", "2nb", "1"]
    old = {"bowler": {"runs": 20, "balls": 15, "name": "X"}, "last": balls}
    new = {"bowler": {"runs": 24, "balls": 16, "name": "X"}, "last": [*balls[1:], "4"]}
    assert patch.diff(old, new) == [
        ["k", ["bowler"], [0, 16, 2, 24]],
        ["w", ["last"], 1, ["4"]],
    ]


def test_new_keys_travel_by_name():
    assert patch.diff({"a": 1}, {"a": 2, "bowler": "X"}) == [["m", [], {"a": 2, "bowler": "X"}]]
    assert patch.diff({"a": 1}, {"a": 1, "b": 2}) == [["s", ["b"], 2]]


def test_a_window_of_repeated_items_still_slides():
    # The first item did not change, yet the window moved: one "w", not a whole set.
    old = ["1", "1", "1", "•", "1", "1"]
    new = ["1", "1", "•", "1", "1", "4"]
    assert patch.diff({"last": old}, {"last": new}) == [["w", ["last"], 1, ["4"]]]
    assert patch.diff({"last": old}, {"last": old[2:]}) == [["h", ["last"], 2]]


def test_swapped_items_are_picked_not_resent():
    old = {"batters_in": ["WP Saha", "B Sai Sudharsan"]}
    new = {"batters_in": ["B Sai Sudharsan", "WP Saha"]}
    assert patch.diff(old, new) == [["p", ["batters_in"], [1, 0]]]


def test_rank_is_code_point_order():
    old = {"b": 1, "B": 2, "é": 3, "\U0001F600": 4, "\uFF01": 5}
    new = {**old, "\U0001F600": 9, "\uFF01": 8}
    # sorted(): "B" < "b" < "é" < U+FF01 < U+1F600 (a UTF-16 sort would swap the last two)
    assert patch.apply(old, [["k", [], [3, 8, 4, 9]]]) == new
    assert patch.apply(old, patch.diff(old, new)) == new


def test_a_change_never_costs_more_than_setting_the_value():
    assert patch.diff({"batters": ["A", "B"]}, {"batters": ["C", "A"]}) == [
        ["s", ["batters"], ["C", "A"]]]
    assert patch.diff({"x": {"a": 1, "b": [1]}}, {"x": {"a": 2, "b": [2]}}) == [
        ["s", ["x"], {"a": 2, "b": [2]}]]


def test_growth_is_an_append_and_shrink_a_truncate():
    assert patch.diff({"x": [1, 2]}, {"x": [1, 2, 3]}) == [["a", ["x"], [3]]]
    assert patch.diff({"x": [1, 2, 3]}, {"x": [1]}) == [["t", ["x"], 1]]


@pytest.mark.parametrize("bad", [
    "x", ["x"], [["q", []]], [["s", "innings", 1]], [["d", []]], [["a", [], [1]]],
    [["s", ["runs"]]], [["s", ["runs"], 1, 2]], [["d", ["runs"], 1]], [[1, []]], [[]],
    [["k", [], [9, 1]]], [["k", [], [0]]], [["k", [], {"runs": 1}]], [["k", ["list"], [0, 1]]],
    [["k", [], [True, 1]]], [["w", ["list"], 3, []]], [["w", ["list"], 1]],
    [["w", ["list"], 1, "x"]], [["w", ["runs"], 0, []]], [["p", ["list"], [2]]],
    [["p", ["list"], [-1]]], [["p", ["list"], 0]], [["p", ["runs"], [0]]],
    [["s", ["nope", "deeper"], 1]], [["a", ["runs"], [1]]], [["t", ["list"], 9]],
    [["h", ["list"], True]], [["d", ["list", 0]]], [["m", ["list"], {"a": 1}]],
    [["m", [], [1]]], [["n", ["missing"], []]], [["n", ["list"], [["s", ["k"], 1]]]],
])
def test_bad_patches_raise_patch_error(bad):
    with pytest.raises(patch.PatchError):
        patch.apply({"runs": 1, "list": [1, 2]}, bad)

"""The multi-CDN optimizer (media/steering.py), the steered master playlist and its linter.

Pure: windows of figures in, decisions out, no clock or I/O. Times are ms; windows end every
2 s as the analytics worker's would with 1 s heartbeats.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from media.ladder import Ladder, parse_rungs
from media.lint import lint_set, lint_steering
from media.playlist import (
    SegmentEntry,
    Steering,
    Timeline,
    render_master,
    render_media,
    steered_master,
    with_region,
)
from media.steering import (
    Optimizer,
    Overrides,
    Policy,
    Quality,
    apply_overrides,
    combine,
    drain_field,
    manifest,
    pin_field,
)

A, B = "cdn-a", "cdn-b"
POLICY = Policy((A, B), hold_down_ms=30_000, ramp_step_ms=10_000)


def good(at: int, cdn: str = A, region: str = "south", kbps: float = 2500) -> Quality:
    return Quality(region, cdn, at, sessions=10, avg_bitrate_kbps=kbps, rebuffering_ratio=0.0)


def slow(at: int, cdn: str = A, region: str = "south") -> Quality:
    return Quality(region, cdn, at, sessions=10, avg_bitrate_kbps=800, rebuffering_ratio=0.0)


def warm(opt: Optimizer, until: int = 10_000) -> None:
    """A region on cdn-a at 2.5 Mbit/s for a while: the reference bitrate is known."""
    for at in range(2_000, until + 1, 2_000):
        opt.observe(good(at))
        opt.tick(at)


def moved(opt: Optimizer) -> Optimizer:
    warm(opt)
    for at in (10_000, 12_000, 14_000):
        opt.observe(slow(at + 1))
        opt.tick(at)
    return opt


def test_without_evidence_players_start_on_the_first_pathway() -> None:
    opt = Optimizer(POLICY)
    assert opt.priority("north", 0) == [A, B] == opt.priority("north", 99)


def test_two_bad_windows_are_not_enough_three_in_a_row_move_the_region() -> None:
    opt = Optimizer(POLICY)
    warm(opt)
    for at in (12_000, 14_000):         # one bad interval is in two (overlapping) windows
        opt.observe(slow(at))
        assert opt.tick(at) == [] and opt.priority("south", 0)[0] == A
    opt.observe(good(16_000))           # recovered: the streak restarts
    for at in (18_000, 20_000):
        opt.observe(slow(at))
        assert opt.tick(at) == []
    opt.observe(slow(22_000))
    events = opt.tick(22_000)
    assert [e.what.split(":")[0] for e in events] == [f"moved {A} -> {B}"]
    assert "800 kbit/s against a reference of 24" in events[0].what  # 2500, decaying
    assert opt.priority("south", 0) == [B, A] == opt.priority("south", 99)
    assert opt.priority("north", 0) == [A, B]  # another region is not affected


def test_rebuffering_alone_makes_a_window_bad() -> None:
    opt = Optimizer(POLICY)
    for at in (2_000, 4_000, 6_000):
        opt.observe(Quality("east", A, at, 5, 2500, rebuffering_ratio=0.05))
    assert opt.tick(6_000) and opt.priority("east", 50)[0] == B


def test_windows_out_of_order_other_cdns_and_empty_ones_say_nothing() -> None:
    opt = Optimizer(POLICY)
    warm(opt)
    opt.observe(slow(11_500))
    opt.observe(slow(12_000))
    opt.observe(slow(11_000))                                 # older than one already seen
    opt.observe(Quality("south", "origin:18081", 13_000, 3, 1, 0.5))  # not a pathway
    opt.observe(Quality("south", A, 13_500, 0, 0, 0.0))       # nobody watched
    opt.observe(Quality("Bad Region!", A, 13_600, 5, 1, 1.0))
    assert opt.tick(14_000) == []
    assert "Bad Region!" not in opt.routes


def test_hold_down_then_a_gradual_return_by_bucket() -> None:
    opt = moved(Optimizer(POLICY))               # moved at 14 s, hold-down 30 s
    assert opt.tick(40_000) == [] and opt.priority("south", 0) == [B, A]
    assert [e.what for e in opt.tick(44_000)] == [f"25% of players back on {A}"]
    assert opt.priority("south", 24) == [A, B] and opt.priority("south", 25) == [B, A]
    opt.observe(good(46_000))                   # the probe players do fine
    assert opt.tick(50_000) == []               # a step lasts 10 s
    assert [e.what for e in opt.tick(54_000)] == [f"50% of players back on {A}"]
    assert opt.priority("south", 49)[0] == A and opt.priority("south", 50)[0] == B
    assert [e.what for e in opt.tick(64_000)] == [f"returned to {A}"]
    assert opt.priority("south", 99) == [A, B]
    assert opt.routes["south"].away is None and opt.routes["south"].backoff == 1


def test_a_failed_probe_doubles_the_hold_down() -> None:
    opt = moved(Optimizer(POLICY))
    opt.tick(44_000)                             # 25% probing
    opt.observe(slow(46_000))                    # cdn-a still slow for its probe players
    assert [e.what for e in opt.tick(47_000)] == [f"probe of {A} failed; hold-down x2"]
    assert opt.priority("south", 0) == [B, A]
    assert opt.tick(47_000 + 59_000) == []       # 60 s this time
    assert opt.tick(47_000 + 60_000)[0].what == f"25% of players back on {A}"


def test_a_return_starts_afresh_and_does_not_bounce_on_old_evidence() -> None:
    opt = moved(Optimizer(POLICY))
    for at in (44_000, 54_000, 64_000):          # no probe data at all (tiny audience)
        opt.tick(at)
    assert opt.priority("south", 99)[0] == A
    assert opt.tick(66_000) == [] and opt.priority("south", 99)[0] == A


def test_nowhere_better_to_go_stays() -> None:
    opt = Optimizer(POLICY)
    warm(opt)
    opt.observe(slow(11_000, cdn=B))
    for at in (12_000, 13_000, 14_000):
        opt.observe(slow(at))
    assert opt.tick(14_000) == [] and opt.priority("south", 0)[0] == A


def test_the_reference_bitrate_decays_with_its_half_life() -> None:
    opt = Optimizer(Policy((A, B), reference_half_life_ms=10_000))
    opt.observe(good(0))
    assert opt.reference("south", 10_000) == pytest.approx(1250)
    assert opt.reference("west", 10_000) == 0.0


def test_pins_and_drains_override_the_optimizer() -> None:
    opt = moved(Optimizer(POLICY))
    pinned = Overrides.from_fields({pin_field("south"): A})
    assert opt.priority("south", 99, pinned) == [A, B]
    everywhere = Overrides.from_fields({pin_field("*"): B})
    assert opt.priority("north", 0, everywhere) == [B, A]
    drained = Overrides.from_fields({drain_field(A): "1"})
    assert opt.priority("north", 0, drained) == [B, A]
    assert apply_overrides([A, B], "x", Overrides({}, frozenset({A, B}))) == [A, B]


def test_overrides_ignore_fields_of_another_shape() -> None:
    got = Overrides.from_fields({"pin:Bad!": A, "drain:cdn-b": "0", "other": "x",
                                 "pin:*": B, "drain:cdn-a": "1"})
    assert got.pins == {"*": B} and got.drained == frozenset({A})


def test_combine_sums_matches_of_one_window() -> None:
    def rec(match: str, region: str, cdn: str, n: int, beats: int, kbps: float,
            ratio: float) -> SimpleNamespace:
        return SimpleNamespace(match_id=match, region=region, cdn=cdn, window_end_ms=20_000,
                               concurrent=n, beats=beats, avg_bitrate_kbps=kbps,
                               rebuffering_ratio=ratio)

    out = combine([rec("m1", "south", A, 2, 4, 1000, 0.0), rec("m2", "south", A, 6, 12, 3000,
                                                                0.1),
                   rec("m1", "*", "*", 8, 16, 2500, 0.075), rec("m1", "south", B, 0, 0, 0, 0)])
    assert out == [Quality("south", A, 20_000, 8, 2500.0, pytest.approx(0.075))]


def test_manifest_has_the_required_fields() -> None:
    assert manifest([B, A], 10, "steering?region=s&bucket=3") == {
        "VERSION": 1, "TTL": 10, "RELOAD-URI": "steering?region=s&bucket=3",
        "PATHWAY-PRIORITY": [B, A]}


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Policy(())
    with pytest.raises(ValueError):
        Policy((A, A))
    with pytest.raises(ValueError):
        Policy((A, B), ramp=(50, 25))


# -- the steered master playlist ----------------------------------------------------------------

STEERING = Steering("http://127.0.0.1:18103/v1/steering",
                    ((A, "http://127.0.0.1:18101"), (B, "http://127.0.0.1:18102")))


def _master() -> tuple[str, dict[str, str]]:
    tl = Timeline(target_duration=2, window=10)
    for i in range(4):
        tl.append(SegmentEntry(i, 1_700_000_000_000 + 2000 * i, 2.0, False,
                               {"720p": 500_000, "360p": 150_000}))
    ladder = Ladder(parse_rungs("720p,360p"))
    media = {f"{n}/index.m3u8": render_media(tl, n, {}) for n in ("720p", "360p")}
    return render_master(tl, ladder), media


def test_steered_master_lists_the_ladder_once_per_pathway() -> None:
    plain, media = _master()
    assert lint_set(plain, media) == []
    text = steered_master(plain, STEERING)
    assert lint_steering(text) == []
    lines = text.splitlines()
    assert lines.count('#EXT-X-CONTENT-STEERING:SERVER-URI="http://127.0.0.1:18103/v1/'
                       'steering",PATHWAY-ID="cdn-a"') == 1
    infs = [ln for ln in lines if ln.startswith("#EXT-X-STREAM-INF:")]
    assert len(infs) == 4
    assert infs[0].endswith(',PATHWAY-ID="cdn-a",STABLE-VARIANT-ID="720p"')
    assert infs[3].endswith(',PATHWAY-ID="cdn-b",STABLE-VARIANT-ID="360p"')
    assert "http://127.0.0.1:18102/hls/720p/index.m3u8" in lines
    assert "http://127.0.0.1:18101/hls/360p/index.m3u8" in lines


def test_region_goes_into_the_steering_uri_only() -> None:
    text = steered_master(_master()[0], STEERING)
    regional = with_region(text, "south")
    assert 'SERVER-URI="http://127.0.0.1:18103/v1/steering?region=south"' in regional
    assert regional.count("region=") == 1
    with_query = with_region(text.replace("/steering\"", "/steering?x=1\""), "s")
    assert "steering?x=1&region=s" in with_query
    plain = _master()[0]
    assert with_region(plain, "south") == plain  # no steering, nothing to name


def test_steering_lint_catches_mismatched_pathways_and_a_missing_tag() -> None:
    text = steered_master(_master()[0], STEERING)
    broken = text.replace('PATHWAY-ID="cdn-b",STABLE-VARIANT-ID="360p"',
                          'PATHWAY-ID="cdn-b",STABLE-VARIANT-ID="240p"')
    assert any(p.rule == "steering" for p in lint_steering(broken))
    untagged = "\n".join(ln for ln in text.splitlines()
                         if not ln.startswith("#EXT-X-CONTENT-STEERING"))
    assert any(p.rule == "bis 4.4.6.6" for p in lint_steering(untagged))
    wrong = text.replace('",PATHWAY-ID="cdn-a"\n', '",PATHWAY-ID="cdn-z"\n', 1)
    assert any("not listed" in p.message for p in lint_steering(wrong))

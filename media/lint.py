"""A playlist linter for the rules the worker promises. Pure: text in, problems out.

Rules cite RFC 8216 (and draft-pantos-hls-rfc8216bis, "bis") and Apple's HLS Authoring
Specification (numbered items). ``lint_media`` checks one media playlist, ``lint_master`` the
multivariant playlist, ``lint_set`` the two together (identical DATERANGEs across renditions).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^",]*)')
PDT_TOLERANCE_S = 0.1


@dataclass(frozen=True, slots=True)
class Problem:
    rule: str
    message: str


@dataclass
class _Segment:
    duration: float
    pdt: dt.datetime | None
    discontinuity: bool
    uri: str
    parts: list[dict[str, str]] = field(default_factory=list)
    pdt_after_part: bool = False


@dataclass
class _Media:
    tags: dict[str, str] = field(default_factory=dict)
    segments: list[_Segment] = field(default_factory=list)
    dateranges: list[dict[str, str]] = field(default_factory=list)
    daterange_lines: list[str] = field(default_factory=list)
    open_parts: list[dict[str, str]] = field(default_factory=list)  # after the last segment
    open_pdt_after_part: bool = False
    hints: list[dict[str, str]] = field(default_factory=list)
    reports: list[dict[str, str]] = field(default_factory=list)


def attributes(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _ATTR.findall(text)}


@functools.lru_cache(maxsize=8192)  # a live window re-parses the same 450 dates every part
def _parse_date(raw: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def _parse_media(text: str) -> _Media:
    media = _Media()
    pending: dict[str, object] = {}
    parts: list[dict[str, str]] = []
    for line in text.splitlines():
        tag, _, value = line.partition(":")
        if tag == "#EXTINF":
            pending["duration"] = float(value.split(",")[0])
        elif tag == "#EXT-X-PROGRAM-DATE-TIME":
            pending["pdt"] = _parse_date(value) or "bad"
            pending["pdt_after_part"] = bool(parts)
        elif tag == "#EXT-X-PART":
            parts.append(attributes(value))
        elif tag == "#EXT-X-PRELOAD-HINT":
            media.hints.append(attributes(value))
        elif tag == "#EXT-X-RENDITION-REPORT":
            media.reports.append(attributes(value))
        elif tag == "#EXT-X-DISCONTINUITY":
            pending["discontinuity"] = True
        elif tag == "#EXT-X-DATERANGE":
            media.dateranges.append(attributes(value))
            media.daterange_lines.append(line)
        elif line.startswith("#EXT"):
            media.tags.setdefault(tag, value)
        elif line and not line.startswith("#"):
            pdt = pending.get("pdt")
            media.segments.append(_Segment(float(pending.get("duration", -1)),  # type: ignore[arg-type]
                                           pdt if isinstance(pdt, dt.datetime) else None,
                                           bool(pending.get("discontinuity")), line, parts,
                                           bool(pending.get("pdt_after_part"))))
            pending, parts = {}, []
    media.open_parts = parts
    media.open_pdt_after_part = bool(pending.get("pdt_after_part"))
    return media


def _header(text: str, media: _Media) -> list[Problem]:
    out: list[Problem] = []
    if not text.startswith("#EXTM3U"):
        out.append(Problem("RFC8216 4.3.1.1", "first line must be #EXTM3U"))
    for tag in ("#EXT-X-TARGETDURATION", "#EXT-X-MEDIA-SEQUENCE"):
        if tag not in media.tags:
            out.append(Problem("RFC8216 4.3.3", f"{tag} missing"))
    if not media.segments:
        out.append(Problem("live", "no segments"))
    return out


def _timing(media: _Media) -> list[Problem]:
    out: list[Problem] = []
    target = int(media.tags.get("#EXT-X-TARGETDURATION", "0") or 0)
    prev: _Segment | None = None
    for seg in media.segments:
        if seg.duration < 0 or round(seg.duration) > target:
            out.append(Problem("RFC8216 4.3.3.1",
                               f"{seg.uri}: EXTINF {seg.duration} exceeds target {target}"))
        if seg.pdt is None:
            out.append(Problem("Apple 8.4", f"{seg.uri}: no EXT-X-PROGRAM-DATE-TIME"))
        elif prev is not None and prev.pdt is not None:
            expected = prev.pdt + dt.timedelta(seconds=prev.duration)
            drift = (seg.pdt - expected).total_seconds()
            if drift < -PDT_TOLERANCE_S:
                out.append(Problem("RFC8216 4.3.2.6", f"{seg.uri}: PDT goes back {drift:.3f}s"))
            elif drift > PDT_TOLERANCE_S and not seg.discontinuity:
                out.append(Problem("RFC8216 4.3.2.3",
                                   f"{seg.uri}: {drift:.3f}s PDT jump without DISCONTINUITY"))
        prev = seg
    return out


def _dateranges(media: _Media) -> list[Problem]:
    out: list[Problem] = []
    seen: dict[str, dict[str, str]] = {}
    if media.dateranges and not any(s.pdt for s in media.segments):
        out.append(Problem("bis 4.4.5.1", "DATERANGE without any PROGRAM-DATE-TIME"))
    for attrs in media.dateranges:
        ident = attrs.get("ID")
        if not ident:
            out.append(Problem("bis 4.4.5.1", "DATERANGE without ID"))
            continue
        earlier = seen.get(ident)
        if earlier is not None and any(earlier.get(k, v) != v for k, v in attrs.items()):
            out.append(Problem("bis 4.4.5.1", f"DATERANGE {ident}: attributes changed"))
        seen.setdefault(ident, attrs)
        if earlier is None and _parse_date(attrs.get("START-DATE", "")) is None:
            out.append(Problem("bis 4.4.5.1", f"DATERANGE {ident}: no valid START-DATE"))
        if float(attrs.get("DURATION", "0") or 0) < 0:
            out.append(Problem("bis 4.4.5.1", f"DATERANGE {ident}: negative DURATION"))
        if attrs.get("END-ON-NEXT") == "YES" and (
                "CLASS" not in attrs or "DURATION" in attrs or "END-DATE" in attrs):
            out.append(Problem("bis 4.4.5.1", f"DATERANGE {ident}: bad END-ON-NEXT"))
    return out


def lint_media(text: str, media: _Media | None = None) -> list[Problem]:
    """One media playlist (``media``: its parse, when the caller has it already)."""
    media = media or _parse_media(text)
    return (_header(text, media) + _timing(media) + _dateranges(media) + lint_ll(media)
            + lint_ll_parts(media))


def _variants(text: str) -> list[tuple[dict[str, str], str]]:
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            uri = lines[i + 1] if i + 1 < len(lines) else ""
            out.append((attributes(line.partition(":")[2]), uri))
    return out


def lint_master(text: str) -> list[Problem]:
    out: list[Problem] = []
    if not text.startswith("#EXTM3U"):
        out.append(Problem("RFC8216 4.3.1.1", "first line must be #EXTM3U"))
    if "#EXT-X-INDEPENDENT-SEGMENTS" not in text.splitlines():
        out.append(Problem("Apple 9.11", "EXT-X-INDEPENDENT-SEGMENTS missing"))
    variants = _variants(text)
    if not variants:
        out.append(Problem("RFC8216 4.3.4.2", "no EXT-X-STREAM-INF"))
    required = {"BANDWIDTH": "RFC8216 4.3.4.2", "AVERAGE-BANDWIDTH": "Apple 9.14",
                "CODECS": "Apple 9.1", "RESOLUTION": "Apple 9.2", "FRAME-RATE": "Apple 9.15"}
    for attrs, uri in variants:
        for name, rule in required.items():
            if name not in attrs:
                out.append(Problem(rule, f"{uri}: {name} missing"))
        if not uri or uri.startswith("#"):
            out.append(Problem("RFC8216 4.3.4.2", "EXT-X-STREAM-INF without a URI line"))
        if "avc1" not in attrs.get("CODECS", "avc1"):
            out.append(Problem("Apple 9.20", f"{uri}: audio-only variant"))
        if int(attrs.get("AVERAGE-BANDWIDTH", 0)) > int(attrs.get("BANDWIDTH", 0)):
            out.append(Problem("RFC8216 4.3.4.2", f"{uri}: AVERAGE-BANDWIDTH > BANDWIDTH"))
    return out


def lint_set(master: str, media: Mapping[str, str],
             sizes: Mapping[str, Mapping[str, int]] | None = None) -> list[Problem]:
    """Master + every media playlist (keyed by the URI in the master).

    ``sizes[uri][segment_uri]`` (optional): segment bytes, to check BANDWIDTH >= every
    segment's bit rate (Apple 1.29 allows live peaks up to 125% of BANDWIDTH).
    """
    out = lint_master(master)
    lines: set[tuple[str, ...]] = set()
    parsed_all: dict[str, _Media] = {}
    for attrs, uri in _variants(master):
        text = media.get(uri)
        if text is None:
            out.append(Problem("RFC8216 4.3.4.2", f"{uri}: media playlist missing"))
            continue
        parsed = parsed_all[uri] = _parse_media(text)  # once: a live window is ~1,400 lines
        out += [Problem(p.rule, f"{uri}: {p.message}") for p in lint_media(text, parsed)]
        lines.add(tuple(sorted(parsed.daterange_lines)))
        for seg in parsed.segments if sizes and uri in sizes else []:
            size = sizes[uri].get(seg.uri) if sizes else None
            if size and seg.duration >= 1 and size * 8 / seg.duration > 1.25 * int(
                    attrs.get("BANDWIDTH", 0)):
                out.append(Problem("Apple 1.29", f"{uri} {seg.uri}: peak above 125% BANDWIDTH"))
    if len(lines) > 1:
        out.append(Problem("bis 6.2.4", "DATERANGE tags differ between media playlists"))
    return out + lint_ll_set(media, parsed_all)


_PATHWAY = re.compile(r"^[A-Za-z0-9._-]+$")


def lint_steering(master: str) -> list[Problem]:
    """A multivariant playlist with content steering: the master rules, one
    EXT-X-CONTENT-STEERING with a SERVER-URI naming a listed pathway, and the same variants
    (by STABLE-VARIANT-ID) in every pathway (rfc8216bis §4.4.6.6, §4.4.6.2)."""
    out = lint_master(master)
    tags = [line for line in master.splitlines() if line.startswith("#EXT-X-CONTENT-STEERING:")]
    if len(tags) != 1:
        return out + [Problem("bis 4.4.6.6", f"{len(tags)} EXT-X-CONTENT-STEERING tags")]
    tag = attributes(tags[0].partition(":")[2])
    ladders: dict[str, list[str]] = {}
    for attrs, uri in _variants(master):
        pathway = attrs.get("PATHWAY-ID", ".")
        if not _PATHWAY.match(pathway):
            out.append(Problem("bis 4.4.6.2", f"{uri}: bad PATHWAY-ID {pathway!r}"))
        ladders.setdefault(pathway, []).append(attrs.get("STABLE-VARIANT-ID", uri))
    if not tag.get("SERVER-URI"):
        out.append(Problem("bis 4.4.6.6", "EXT-X-CONTENT-STEERING without SERVER-URI"))
    if tag.get("PATHWAY-ID", ".") not in ladders:
        out.append(Problem("bis 4.4.6.6", f"PATHWAY-ID {tag.get('PATHWAY-ID')!r} not listed"))
    if len({tuple(ids) for ids in ladders.values()}) > 1:
        out.append(Problem("steering", "pathways list different variants"))
    return out


# --- Low-Latency HLS (bis §4.4.3.7-8, §4.4.4.9, §4.4.5.2-4, §6.2.2; Apple authoring 14) ---------

def _float(attrs: Mapping[str, str], name: str) -> float | None:
    try:
        return float(attrs[name])
    except (KeyError, ValueError):
        return None


def lint_ll(media: _Media) -> list[Problem]:
    """Header rules of a playlist with parts, a SERVER-CONTROL or a SKIP."""
    out: list[Problem] = []
    has_parts = bool(media.open_parts) or any(s.parts for s in media.segments)
    target = float(media.tags.get("#EXT-X-TARGETDURATION", "0") or 0)
    control = attributes(media.tags.get("#EXT-X-SERVER-CONTROL", ""))
    part_target = _float(attributes(media.tags.get("#EXT-X-PART-INF", "")), "PART-TARGET")
    version = int(media.tags.get("#EXT-X-VERSION", "1") or 1)
    if has_parts and part_target is None:
        out.append(Problem("bis 4.4.3.7", "EXT-X-PART without EXT-X-PART-INF:PART-TARGET"))
    if part_target is not None:
        hold = _float(control, "PART-HOLD-BACK")
        if hold is None:
            out.append(Problem("bis 4.4.3.8", "PART-INF without SERVER-CONTROL PART-HOLD-BACK"))
        elif hold < 3 * part_target - 1e-9:
            out.append(Problem("Apple 14.3", f"PART-HOLD-BACK {hold} < 3 x PART-TARGET"))
    hold_back = _float(control, "HOLD-BACK")
    if hold_back is not None and hold_back < 3 * target:
        out.append(Problem("bis 4.4.3.8", f"HOLD-BACK {hold_back} < 3 x target duration"))
    skip_until = _float(control, "CAN-SKIP-UNTIL")
    if skip_until is not None and skip_until < 6 * target:
        out.append(Problem("bis 4.4.3.8", f"CAN-SKIP-UNTIL {skip_until} < 6 x target duration"))
    if "#EXT-X-SKIP" in media.tags and (skip_until is None or version < 9):
        out.append(Problem("bis 4.4.5.2", "EXT-X-SKIP needs CAN-SKIP-UNTIL and version >= 9"))
    if "#EXT-X-MAP" in media.tags and version < 6:
        out.append(Problem("bis 8", "EXT-X-MAP in a media playlist needs version >= 6"))
    kinds = [h.get("TYPE") for h in media.hints]
    if any(k not in ("PART", "MAP") for k in kinds) or len(kinds) != len(set(kinds)):
        out.append(Problem("bis 4.4.5.3", f"bad EXT-X-PRELOAD-HINT types {kinds}"))
    for report in media.reports:
        if "URI" not in report or "LAST-MSN" not in report or (has_parts
                                                               and "LAST-PART" not in report):
            out.append(Problem("bis 4.4.5.4", f"incomplete EXT-X-RENDITION-REPORT {report}"))
    return out


def lint_ll_parts(media: _Media) -> list[Problem]:
    """Each part within PART-TARGET (and >= 85% of it unless independent or last of its
    segment), the parts of a segment adding up to its EXTINF, PDT before the first part, and
    no part listed more than 3 target durations from the end."""
    out: list[Problem] = []
    part_target = _float(attributes(media.tags.get("#EXT-X-PART-INF", "")), "PART-TARGET")
    if part_target is None:
        return out
    target = float(media.tags.get("#EXT-X-TARGETDURATION", "0") or 0)
    groups: list[tuple[str, list[dict[str, str]], float | None, bool]] = [
        (s.uri, s.parts, s.duration, s.pdt_after_part) for s in media.segments]
    groups.append(("(open segment)", media.open_parts, None, media.open_pdt_after_part))
    remaining = sum(s.duration for s in media.segments) + sum(
        _float(p, "DURATION") or 0 for p in media.open_parts)
    for uri, parts, extinf, pdt_after in groups:
        durations = [_float(p, "DURATION") for p in parts]
        if any(d is None or "URI" not in p for d, p in zip(durations, parts, strict=True)):
            out.append(Problem("bis 4.4.4.9", f"{uri}: EXT-X-PART without DURATION or URI"))
            continue
        for i, (d, p) in enumerate(zip(durations, parts, strict=True)):
            assert d is not None
            if d > part_target + 1e-6:
                out.append(Problem("bis 4.4.4.9", f"{uri}: part {d} > PART-TARGET"))
            last = i == len(parts) - 1
            if d < 0.85 * part_target and not last and p.get("INDEPENDENT") != "YES":
                out.append(Problem("bis 4.4.4.9", f"{uri}: part {d} < 85% of PART-TARGET"))
        if parts and pdt_after:
            out.append(Problem("bis 4.4.4.9", f"{uri}: PROGRAM-DATE-TIME after its first part"))
        if parts and extinf is not None and abs(sum(d or 0 for d in durations) - extinf) > 0.002:
            out.append(Problem("bis 4.4.4.9", f"{uri}: parts do not add up to EXTINF {extinf}"))
        if parts and remaining > 3 * target + 1e-6:
            out.append(Problem("bis 6.2.2", f"{uri}: parts listed more than 3 x TD from the end"))
        remaining -= extinf if extinf is not None else 0
    return out


def lint_ll_set(media: Mapping[str, str],
                parsed: Mapping[str, _Media] | None = None) -> list[Problem]:
    """Every media playlist carries the same SERVER-CONTROL (bis §4.4.3.8) and, with parts, a
    rendition report for every other rendition (bis Appendix B.1)."""
    out: list[Problem] = []
    parsed = {uri: (parsed or {}).get(uri) or _parse_media(text) for uri, text in media.items()}
    controls = {m.tags.get("#EXT-X-SERVER-CONTROL") for m in parsed.values()}
    if len(controls) > 1:
        out.append(Problem("bis 4.4.3.8", "SERVER-CONTROL differs between media playlists"))
    for uri, m in parsed.items():
        if "#EXT-X-PART-INF" in m.tags and len(m.reports) < len(media) - 1:
            out.append(Problem("bis B.1", f"{uri}: {len(m.reports)} rendition reports for "
                                          f"{len(media) - 1} other renditions"))
    return out

"""The command line: --help everywhere, bad arguments and settings answered clearly."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from stumpcast.cli import build_parser
from stumpcast.commands.settings import markdown_table

ROOT = Path(__file__).resolve().parents[2]


def _all_parsers(parser: argparse.ArgumentParser, prefix=()):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _all_parsers(child, (*prefix, name))


def test_every_command_has_help():
    seen = 0
    for path, parser in _all_parsers(build_parser()):
        text = parser.format_help()
        assert "usage: stumpcast" in text, path
        seen += 1
    assert seen > 20


def test_unknown_command_is_a_clear_usage_error():
    out = subprocess.run([sys.executable, "-m", "stumpcast", "bowl"], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 2 and "invalid choice: 'bowl'" in out.stderr


def test_a_bad_setting_names_the_variable():
    out = subprocess.run([sys.executable, "-m", "stumpcast", "settings"], capture_output=True,
                         text=True, cwd=ROOT, env={"STUMPCAST_GATEWAY_PORT": "http",
                                                   "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2
    assert "STUMPCAST_GATEWAY_PORT" in out.stderr and "Traceback" not in out.stderr


def test_operations_doc_lists_every_setting():
    doc = (ROOT / "docs" / "operations.md").read_text()
    assert markdown_table() in doc, "run `stumpcast settings --markdown` into docs/operations.md"


@pytest.mark.parametrize("argv", [
    ["scorecard", "/nonexistent.json"], ["replay", "--speed", "x", "m.json"],
    ["bench", "streams", "--parts", "throughput,chaos"],
    ["bench", "streams", "--parts", "faults", "--fault-speed", "0"]])
def test_bad_arguments_exit_non_zero_without_a_traceback(argv):
    out = subprocess.run([sys.executable, "-m", "stumpcast", *argv], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("what", ["streams", "gateway", "media"])
def test_bench_no_record_before_or_after_the_subcommand(what: str) -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "--no-record", what]).no_record is True
    assert parser.parse_args(["bench", what, "--no-record"]).no_record is True
    assert parser.parse_args(["bench", what]).no_record is False


def test_bench_streams_names_a_bad_part():
    out = subprocess.run([sys.executable, "-m", "stumpcast", "bench", "streams", "--parts",
                          "faults,chaos"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert "chaos is not one of throughput, latency, faults" in out.stderr

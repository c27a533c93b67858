"""`leadbot demo`: the story runs, tells the right people the right things, cleans up."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from bot.demo import run_demo
from tests.conftest import shown_text

REPO = Path(__file__).resolve().parents[1]
BAR = "│ "


@pytest.fixture(scope="module")
def output() -> str:
    out = io.StringIO()
    assert run_demo(out=out) == 0
    return out.getvalue()


def steps(output: str) -> dict[int, str]:
    """The output cut at the `── N. …` headings: {N: that step's text}."""
    parts = re.split(r"^── (\d+)\. ", output, flags=re.MULTILINE)
    return {int(n): text for n, text in zip(parts[1::2], parts[2::2], strict=True)}


def shown(step: str, title: str) -> list[str]:
    """The bodies of every message in `step` shown under a line starting with `title`."""
    bodies: list[str] = []
    lines = step.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(title):
            body = []
            for following in lines[i + 1 :]:
                if not following.startswith(BAR.rstrip()):
                    break
                body.append(following[len(BAR) :])
            bodies.append("\n".join(body))
    return bodies


def test_demo_tells_the_whole_story(output: str) -> None:
    story = steps(output)
    assert sorted(story) == list(range(1, 9))

    # 1. receipt for Maya, then a public card without contact details
    [receipt] = shown(story[1], "Maya sees (only visible to you)")
    assert "Lead #1" in receipt and "Jane Doe" in receipt
    [card] = shown(story[1], "#leads:")
    assert "Jane Doe" in card and "Acme Corp" in card and "[*Claim*]" in card
    assert "jane@acme.example" not in card and "555" not in shown_text(card)

    # 2. usage, 3. the refusal naming field and value, 4. the form
    [usage] = shown(story[2], "Maya sees")
    assert "/lead" in usage and "jane@acme.example" in usage
    [refusal] = shown(story[3], "Maya sees")
    assert "email" in refusal and "bob@nowhere" in refusal
    [form] = shown(story[4], "A form opens")
    assert "New lead" in form and "Name:" in form and "[*Submit*]" in form

    # 5. the card changes in place; contact details go only to Rico; Maya hears who and when
    [updated] = shown(story[5], "#leads — the card is updated in place")
    assert "Claimed by @Rico" in updated and "[ Release ]" in updated
    assert "jane@acme.example" not in updated
    [rico] = shown(story[5], "DM to Rico")
    assert "jane@acme.example" in rico and "+1 415 555 0100" in rico
    [maya] = shown(story[5], "DM to Maya")
    assert "@Rico" in maya and "7m" in maya

    # 6. the late click names the owner
    [late] = shown(story[6], "Sam sees")
    assert "Too late" in late and "claimed by @Rico" in late
    assert "DM to Sam" not in story[6]

    # 7. two reminders in the thread, then the escalation with a link, and a thread note
    thread = shown(story[7], "#leads, in the card's thread")
    assert len(thread) == 3
    assert "Reminder 1" in thread[0] and "Reminder 2" in thread[1]
    assert "managers have been told" in thread[2]
    [escalation] = shown(story[7], "DM to Dana")
    assert "still unclaimed" in escalation
    assert "https://leadbot-emulator.slack.com/archives/" in escalation

    # 8. the digest
    [digest] = shown(story[8], "DM to Dana")
    assert "2 submitted" in digest and "1 claimed" in digest
    assert "@Rico: 1" in digest and "Tom Lee" in digest and "tom@globex" not in digest

    closing = " ".join(output.split())  # the closing lines are wrapped to the width
    assert "leadbot manifest" in closing and '"Connect a Slack workspace" in the README' in closing


def test_demo_output_is_plain_readable_text(output: str) -> None:
    for raw in ("<@U", "<!date", "<!", "<#", "&lt;", "&gt;", "&amp;", "U0REP", "U0MA"):
        assert raw not in output, raw
    assert "Traceback" not in output and " INFO " not in output
    too_wide = [line for line in output.splitlines() if len(line) > 80]
    assert too_wide == []


def test_each_step_shows_only_what_changed(output: str) -> None:
    story = steps(output)
    # The first card is shown when posted and when claimed, never again afterwards.
    assert len(shown(story[1], "#leads:")) == 1
    # Help, a refused lead and an opened form post nothing to the channel or to DMs.
    for n in (2, 3, 4):
        assert not shown(story[n], "#leads") and not shown(story[n], "DM to"), n
    # Step 6 changes nothing public: only Sam's private note.
    assert not shown(story[6], "#leads") and not shown(story[6], "DM to")
    assert "Jane Doe" not in "\n".join(shown(story[7], "#leads"))


def test_demo_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its own temp root, so demos run by other processes at the same time don't interfere.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    threads_before = set(threading.enumerate())

    assert run_demo(out=io.StringIO(), width=60) == 0

    assert list(tmp_path.iterdir()) == []
    left = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert left == [], [t.name for t in left]


def test_demo_narrow_width_is_respected() -> None:
    out = io.StringIO()
    assert run_demo(out=out, width=60) == 0
    # Long URLs are never split, so they may exceed a narrow width; nothing else does.
    too_wide = [
        line for line in out.getvalue().splitlines() if len(line) > 62 and "https://" not in line
    ]
    assert too_wide == []


def test_leadbot_demo_command_runs_as_a_subprocess() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "── 8. " in result.stdout and "Lead digest" in result.stdout
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == ""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_leadbot_demo_on_a_full_disk_says_so_in_one_line() -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "bot.cli", "demo"],
            cwd=REPO,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "leadbot demo: cannot write the story to stdout: No space left on device"
    ]


def test_leadbot_demo_with_stdout_closed_says_so_in_one_line() -> None:
    # `>&-` closes fd 1 before Python starts, so sys.stdout is None.
    result = subprocess.run(
        ["sh", "-c", 'exec "$0" -m bot.cli demo >&-', sys.executable],
        cwd=REPO,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "leadbot demo: cannot write the story to stdout: stdout is closed"
    ]


def test_demo_writes_to_stdout_as_it_is_when_called(capsys: pytest.CaptureFixture[str]) -> None:
    # Not the sys.stdout of import time: a caller that redirects stdout gets the story.
    assert run_demo() == 0
    assert "── 8. " in capsys.readouterr().out

"""Untrusted text is escaped for each place it goes (issue 15, point 4): terminals and CI logs,
workflow commands, markdown (job summaries, check runs, comments)."""

from __future__ import annotations

import re

import pytest

from pipeline_bot.core import escape

HOSTILE = "evil\n::error title=pwned::injected\x1b[31mred\x07`code`<img src=x>@octocat|cell"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain.py", "plain.py"),
        ("a\nb", "a\\nb"),
        ("a\r\nb", "a\\r\\nb"),
        ("\x1b[31mred", "\\e[31mred"),
        ("bell\x07", "bell\\x07"),
        ("line\u2028sep", "line\\x2028sep"),
    ],
)
def test_terminal_text_is_one_line_with_nothing_acted_on(text, expected):
    assert escape.terminal(text) == expected


@pytest.mark.parametrize(
    ("text", "must_not_contain"),
    [
        ("<img src=x onerror=alert(1)>", "<img"),
        ("@octocat please look", "@octocat"),
        ("[click](https://evil.example)", "[click](https"),
        ("a|b", "a|b"),
        ("**bold**", "**bold**"),
        ("x\ny", "\n"),
    ],
)
def test_markdown_text_renders_literally(text, must_not_contain):
    assert must_not_contain not in escape.md_text(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("src/a.py", "`src/a.py`"),
        ("a`b.py", "``a`b.py``"),
        ("``x", "``` ``x ```"),
        ("x\ny", "`x\\ny`"),
    ],
)
def test_code_spans_no_backtick_can_close(text, expected):
    assert escape.md_code(text) == expected


def test_a_hostile_file_name_and_message_stay_inert_in_the_text_report(base_repo, cli):
    base_repo.commit(f"subject {HOSTILE}", {f"src/{HOSTILE.replace('/', '_')}.py": "x = 1\n"})
    out = cli("analyze", "--repo", str(base_repo.root)).stdout
    assert not any(line.startswith("::") for line in out.splitlines())
    assert "\x1b" not in out
    assert "\x07" not in out


def test_a_hostile_file_name_and_message_stay_inert_in_markdown(base_repo, cli):
    base_repo.commit(f"subject {HOSTILE}", {f"src/{HOSTILE.replace('/', '_')}.py": "x = 1\n"})
    md = cli("analyze", "--repo", str(base_repo.root), "--format", "markdown").stdout
    # inside a code span nothing is interpreted; outside one, nothing may be
    outside = re.sub(r"(`+)(.+?)\1", "", md)
    assert "<img" not in outside
    assert "@octocat" not in outside
    assert not any(line.startswith("::") for line in md.splitlines())
    assert "\x1b" not in md


def test_the_apps_comments_escape_reasons_and_model_output():
    from pipeline_bot.app import replies
    from pipeline_bot.models import AIReview, Investigation

    text = replies.locked("alice", "staging", "@everyone <img src=x> [x](javascript:1)")
    assert "@everyone" not in text
    assert "<img" not in text
    found = Investigation(
        summary="<script>x</script> @octocat",
        likely_cause="`rm -rf`",
        evidence=[],
        next_steps=["[do](javascript:1)"],
        confidence=0.5,
    )
    text = replies.investigation(AIReview(status="ok", investigation=found))
    assert "<script>" not in text
    assert "@octocat" not in text
    assert "[do](javascript" not in text  # the brackets are escaped: no link

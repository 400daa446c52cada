"""What the linear scanners detect, as tables: secrets by kind, their head lines, test definitions,
Kubernetes kinds, and the redaction of text that leaves the process."""

from __future__ import annotations

import pytest

from pipeline_bot.core import diffparse
from pipeline_bot.core.diffparse import DiffStreamParser, redact
from pipeline_bot.core.scan import first_secret_per_line
from pipeline_bot.models import FileChange

AWS = "AKIA" + "ABCDEFGHIJKLMNOP"
GH = "ghp_" + "a" * 36
GH_FINE = "github_pat_" + "b1_" * 20
SLACK = "xoxb-" + "1234567890"
OPENAI = "sk-" + "c" * 32
GOOGLE = "AIza" + "d" * 35
KEY_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"  # a line of key material (base64)


def _diff(path: str, hunks: list[tuple[str, list[str]]], status: str = "M") -> bytes:
    """git diff --raw -p -z output for one file; each hunk is (header, lines)."""
    raw = f":100644 100644 1111111 2222222 {status}\0{path}\0\0"
    text = f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
    for header, lines in hunks:
        text += header + "\n" + "".join(line + "\n" for line in lines)
    return raw.encode() + text.encode()


def _parse(data: bytes, chunk: int = 1 << 20) -> FileChange:
    parser = DiffStreamParser()
    files = []
    for i in range(0, len(data), chunk):
        files += parser.feed(data[i : i + chunk])
    files += parser.close()
    assert len(files) == 1
    return files[0]


def _added(line: str) -> FileChange:
    """`line` (lines, when it holds newlines) added to a file after a first line."""
    lines = ["+" + part for part in line.split("\n")]
    header = f"@@ -0,0 +1,{1 + len(lines)} @@"
    return _parse(_diff("app/settings.py", [(header, ["+x = 1", *lines])], "A"))


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (f"key = {AWS}", "aws"),
        ("key = ASIA1234567890ABCDEF", "aws"),
        (f"key = x{AWS}", None),  # not at a word start
        (f"key = {AWS}X", None),  # 17 characters: not a key id
        ("key = akia1234567890abcdef", None),  # key ids are upper case
        (f"token: {GH}", "github"),
        (f"pat = {GH_FINE}", "github"),  # alone in its file: the old prefilter missed it
        ("token: ghp_short", None),
        (f"-----BEGIN PRIVATE KEY-----\n{KEY_BODY}", "private_key"),
        (
            f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY}\n-----END RSA PRIVATE KEY-----",
            "private_key",
        ),
        (f"-----BEGIN ENCRYPTED PRIVATE KEY-----\n{KEY_BODY}", "private_key"),
        ("-----BEGIN RSA PRIVATE KEY-----\n" + "Proc-Type: 4,ENCRYPTED", "private_key"),
        (f'{{"private_key": "-----BEGIN PRIVATE KEY-----\\n{KEY_BODY}\\n"}}', "private_key"),
        (f"-----BEGIN OPENSSH PRIVATE KEY----- {KEY_BODY}", "private_key"),  # newlines lost
        # a header without key material: code that parses keys, a test's string, documentation
        ("-----BEGIN PRIVATE KEY-----", None),
        ('if line == "-----BEGIN PRIVATE KEY-----":\n    return parse(data)', None),
        ('HEADER = "-----BEGIN RSA PRIVATE KEY-----"\nprivateKeyContentBytes := load()', None),
        ("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----", None),
        ("-----BEGIN PUBLIC KEY-----", None),
        (f"SLACK = '{SLACK}'", "slack"),
        ("SLACK = 'xoxb-123'", None),
        (f"OPENAI_KEY = {OPENAI}", "openai"),
        ("OPENAI_KEY = sk-proj-" + "e" * 28, "openai"),  # 28 after proj-, 33 after sk-
        ("x = ask-" + "c" * 40, None),
        (f"maps = {GOOGLE}", "google"),
        ("password = 'hunter2hunter2'", "assignment"),
        ('PassWord: "hunter2hunter2"', "assignment"),
        ('"passwd"   =   "hunter2hunter2"', "assignment"),
        ("db_secret='s3cr3t-value'", "assignment"),
        ("API_KEY = 'abcdefghijkl'", "assignment"),
        ("api-key: 'abcdefghijkl'", "assignment"),
        ('access_token = "abcdefghijkl"', "assignment"),
        ('AuthToken = "abcdefghijkl"', "assignment"),
        ('token = "abcdefghijkl"', None),  # a bare "token" is not one of the names
        ("password = 'short'", None),  # fewer than 8 characters
        ("password = '${DB_PASSWORD}'", None),  # a placeholder
        ("password = 'unterminated", None),
        ("password = get_password()", None),
        # values that stand for one to fill in: a template's, a docs example's
        ("password = 'changethis'", None),
        ('"postgres_password": "changethis"', None),
        ('DB_PASSWORD: "ChangeMe2024"', None),
        ("api_key = 'your-api-key-here'", None),
        ('"secret": "xxxxxxxxxxxx"', None),
        ("password = '********'", None),
        ("password = 'password'", None),
        ("api_key: 'sk_example_0123456789'", None),
        ("auth_token = 'PLACEHOLDER_TOKEN'", None),
        # still secrets: a weak one is a committed credential too (built from parts, so this
        # file's own diff holds none: the docs test runs the Action on the newest commit)
        ("password = " + "'password123!'", "assignment"),
        ("password = " + "'Tr0ub4dor&3'", "assignment"),
        ("password = 'changeme' secret = " + "'s3cr3t-value'", "assignment"),
        ('secret = "not a placeholder" token="x" api_key=' + '"k3y-abcdefgh"', "assignment"),
    ],
)
def test_each_kind_of_secret_is_found_on_the_added_line(line, kind):
    secrets = _added(line).signals.secrets
    assert [(s.line, s.kind) for s in secrets] == ([(2, kind)] if kind else [])


@pytest.mark.parametrize(
    "line",
    [
        f"a = '{OPENAI}' password = 'hunter2hunter2' {AWS}",
        f"password = '{OPENAI}'",  # the assignment starts first
        f"{AWS} -----BEGIN PRIVATE KEY----- {GH}",
        "sk-sk-sk-" + "f" * 40,
        "secret=secret='abcdefghij'",
        "x" * 50 + "auth-token='abcdefghij' " + SLACK,
        "password " + "\t" * 20 + ": 'abcdefghij'",
        f"-----BEGIN -----BEGIN PRIVATE KEY----- {GOOGLE}",
        f"{GH_FINE}{GH}",
        "access_token" * 5 + "='abcdefghij'",
    ],
)
def test_the_first_kind_on_a_line_is_the_one_the_single_pattern_finds_first(line):
    data = line.encode()
    reference = diffparse._SECRET.search(data)
    assert reference is not None
    assert first_secret_per_line(data, data.lower()) == [(0, reference.lastgroup)]


def test_secret_lines_are_head_lines_across_hunks_removed_lines_and_context():
    hunks = [
        ("@@ -3,4 +3,4 @@ def f(password='in-the-header-not-a-line'):", [
            " context",
            f"-old = '{AWS}'",  # removed: not reported
            f"+new = '{AWS}'",  # line 4
            " context",
            " context",
        ]),
        ("@@ -20,3 +20,5 @@", [
            " context",  # line 20
            "-gone",
            "\\ No newline at end of file",
            f"+{GH}",  # line 21
            "+plain",
            f"+{SLACK} {OPENAI}",  # line 23, one hit for the line
            " context",
        ]),
        ("@@ -90 +92,2 @@", [f"-{GOOGLE}", "+-----BEGIN PRIVATE KEY-----", f"+{KEY_BODY}"]),  # 92
    ]  # fmt: skip
    f = _parse(_diff("src/app.py", hunks))
    assert [(s.line, s.kind) for s in f.signals.secrets] == [
        (4, "aws"),
        (21, "github"),
        (23, "slack"),
        (92, "private_key"),
    ]


def test_the_result_does_not_depend_on_how_the_output_is_cut():
    lines = [f"+{GH}" if i % 7 == 0 else f"+x{i} = {i}" for i in range(300)]
    data = _diff("a.py", [("@@ -0,0 +1,300 @@", lines)], "A")
    results = {tuple(_parse(data, size).signals.secrets) for size in (1, 5, 64, 4096, len(data))}
    assert len(results) == 1
    assert [s.line for s in next(iter(results))] == list(range(1, 301, 7))


@pytest.mark.parametrize(
    ("removed", "added", "lines", "count"),
    [
        (["-def test_a():", "-    pass"], [], [10], 1),
        (["-async  def test_b():", "-\tdef testing():"], [], [10, 10], 2),
        (["-func TestC(t *testing.T) {", "-@Test", "-it ('works', () => {"], [], [10] * 3, 3),
        (["-describe('x', () => {", "-#[test]", "-test (name)"], [], [10] * 3, 3),
        (["-def helper():", "-# def test_commented", "-    x = test"], [], [], 0),
        (["-def test_a():"], ["+def test_a2():"], [10], 0),  # replaced: not a net removal
    ],
)
def test_removed_test_definitions_are_counted_with_their_lines(removed, added, lines, count):
    header = f"@@ -10,{len(removed)} +10,{len(added)} @@"
    f = _parse(_diff("tests/test_x.py", [(header, [*removed, *added])]))
    net = f.signals.removed_tests - f.signals.added_tests
    assert (f.signals.removed_test_lines, net) == (lines, count)


@pytest.mark.parametrize(
    ("lines", "kinds"),
    [
        (["+apiVersion: apps/v1", "+kind: Deployment"], ["Deployment"]),
        ([" kind:Service", "+kind: \t ConfigMap", "-kind: Secret"], ["ConfigMap", "Service"]),
        (["+  kind: Nested", "+# kind: Comment", "+kind: 9lives"], []),
    ],
)
def test_kubernetes_kinds_come_from_added_and_context_lines(lines, kinds):
    f = _parse(_diff("deploy/app.yaml", [(f"@@ -1,3 +1,{len(lines)} @@", lines)]))
    assert f.signals.kube_kinds == kinds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nothing to hide here", "nothing to hide here"),
        (f"key {AWS} end", "key [REDACTED] end"),
        (f"{GH_FINE} and {OPENAI}", "[REDACTED] and [REDACTED]"),
        ("a\n-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\nb", "a\n[REDACTED]\nb"),
        ("-----BEGIN EC PRIVATE KEY-----\nMIIE cut", "[REDACTED]"),
        ("password = 'hunter2hunter2';", "[REDACTED];"),
    ],
)
def test_redaction_replaces_each_secret(text, expected):
    assert redact(text) == expected

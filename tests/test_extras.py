"""The App's packages are an extra ([app]); the Action's image leaves them out. A feature that
needs a missing extra says which, and how to install it, with exit code 2: never a traceback."""

from __future__ import annotations

import sys

import pytest

from pipeline_bot.errors import MissingExtraError, require_extra
from pipeline_bot.exit_codes import Exit, for_error


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch):
    """Make modules unimportable, as in an installation without them (a None entry in
    sys.modules makes `import` fail and find_spec answer None); modules of ours that imported
    them are dropped so they are imported afresh."""

    def hide(*names: str) -> None:
        for name in names:
            monkeypatch.setitem(sys.modules, name, None)
        for name in list(sys.modules):
            if name.startswith(("pipeline_bot.app", "pipeline_bot.integrations.store")):
                monkeypatch.delitem(sys.modules, name)

    return hide


@pytest.mark.parametrize(
    ("modules", "missing"),
    [
        (("json",), []),
        (("json", "no_such_module_here"), ["no_such_module_here"]),
        (("no_such.sub", "json", "other_missing"), ["no_such.sub", "other_missing"]),
    ],
)
def test_require_extra_names_what_is_missing(modules, missing):
    if not missing:
        require_extra("a feature", "app", *modules)
        return
    with pytest.raises(MissingExtraError) as err:
        require_extra("a feature", "app", *modules)
    assert err.value.missing == missing
    assert "pip install 'pipeline-bot[app]'" in str(err.value)
    assert for_error(err.value) == Exit.BAD_INPUT


def test_serve_without_the_app_extra_says_to_install_it(cli, without, monkeypatch):
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "a-webhook-secret-of-enough-length")
    without("fastapi", "sqlalchemy")
    out = cli("serve", "--port", "0")
    assert out.exit_code == Exit.BAD_INPUT
    assert "needs the [app] extra" in out.stderr
    assert "missing: fastapi, sqlalchemy" in out.stderr
    assert "pip install 'pipeline-bot[app]'" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_sql_store_without_the_app_extra_says_to_install_it(without):
    from pipeline_bot.settings import Settings
    from pipeline_bot.wiring import store

    without("sqlalchemy")
    with pytest.raises(MissingExtraError, match=r"the SQL store .* needs the \[app\] extra"):
        store(Settings())

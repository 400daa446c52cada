"""`.github/pipeline-bot.yml`: defaults, validation with field paths and lines, the JSON Schema."""

from __future__ import annotations

import json

GOOD = """\
version: 1
environments:
  - name: staging
    order: 1
    auto_deploy: [main]
  - name: production
    order: 2
    required_permission: maintain
services:
  - name: api
    paths: ["services/api/**", "libs/common/**"]
    image: ghcr.io/acme/api
  - name: web
    paths: ["web/"]
    depends_on: [api]
risk:
  rules:
    - id: payments
      paths: ["services/api/payments/**"]
      weight: 25
      message: Payments code needs a second reviewer
      severity: high
  ignore: ["vendor/**"]
  generated: ["**/*.pb.go"]
  disable: [untested-code]
"""


def test_schema_is_json_schema_describing_the_file(cli):
    result = cli("config", "schema")
    schema = json.loads(result.stdout)
    assert result.exit_code == 0
    assert schema["$schema"].endswith("2020-12/schema")
    assert {"version", "environments", "services", "risk", "gates"} <= set(schema["properties"])
    assert schema["required"] == ["version"]


def test_a_valid_file_is_reported_valid(cli, tmp_path):
    path = tmp_path / "pipeline-bot.yml"
    path.write_text(GOOD)
    result = cli("config", "validate", str(path))
    assert result.exit_code == 0, result.stderr
    assert "valid (2 environment(s), 2 service(s), 1 risk rule(s))" in result.stdout


def test_every_problem_is_reported_with_field_path_line_and_expectation(cli, tmp_path):
    path = tmp_path / "pipeline-bot.yml"
    path.write_text(
        "version: 2\n"
        "environments:\n"
        "  - name: Prod Env\n"
        "    order: first\n"
        "    colour: blue\n"
        "services:\n"
        "  - name: api\n"
        "risk:\n"
        "  rules:\n"
        "    - {id: x, paths: [a], weight: 500, message: m}\n"
    )
    result = cli("config", "validate", str(path))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[-1] == f"{path}: 6 problem(s)"
    text = "\n".join(lines)
    assert f"{path}:1: version: Input should be 1, got 2" in text
    assert f"{path}:3: environments[0].name: 'Prod Env' is not a valid name" in text
    assert f"{path}:4: environments[0].order: Input should be a valid integer" in text
    assert f"{path}:5: environments[0].colour: unknown field" in text
    assert f"{path}:7: services[0].paths: required field is missing" in text
    assert f"{path}:10: risk.rules[0].weight: Input should be less than or equal to 100" in text


def test_yaml_syntax_errors_name_the_line(cli, tmp_path):
    path = tmp_path / "pipeline-bot.yml"
    path.write_text("version: 1\nenvironments: [\n  - name: x\n")
    result = cli("config", "validate", str(path))
    assert result.exit_code == 2
    assert "YAML syntax" in result.stderr
    assert f"{path}:4" in result.stderr or f"{path}:3" in result.stderr


def test_unknown_dependency_and_cycles_are_rejected(cli, tmp_path):
    path = tmp_path / "c.yml"
    path.write_text(
        "version: 1\nservices:\n  - {name: a, paths: [a/], depends_on: [b]}\n"
        "  - {name: b, paths: [b/], depends_on: [a]}\n"
    )
    result = cli("config", "validate", str(path))
    assert result.exit_code == 2
    assert "cycle: a -> b -> a" in result.stderr
    path.write_text("version: 1\nservices:\n  - {name: a, paths: [a/], depends_on: [zzz]}\n")
    assert "unknown service 'zzz'" in cli("config", "validate", str(path)).stderr


def test_duplicate_environment_names_are_rejected(cli, tmp_path):
    path = tmp_path / "d.yml"
    path.write_text("version: 1\nenvironments:\n  - {name: prod}\n  - {name: prod}\n")
    assert "name 'prod' is used twice" in cli("config", "validate", str(path)).stderr


def test_validate_without_a_file_explains_that_defaults_apply(cli, base_repo):
    result = cli("config", "validate", "--repo", str(base_repo.root))
    assert result.exit_code == 2
    assert "uses its defaults" in result.stderr


def test_missing_file_is_a_clear_error(cli, tmp_path):
    result = cli("config", "validate", str(tmp_path / "nope.yml"))
    assert result.exit_code == 2
    assert "file not found" in result.stderr


def test_repository_config_drives_services_rules_and_exclusions(base_repo, cli):
    base_repo.commit("config", {".github/pipeline-bot.yml": GOOD})
    base_repo.commit(
        "payments",
        {
            "services/api/payments/charge.py": "def charge():\n    return 1\n",
            "web/index.html": "<p>hi</p>\n",
            "vendor/lib/x.py": "x = 1\n",
            "proto/api.pb.go": "package api\n",
        },
    )
    data = cli("analyze", "--repo", str(base_repo.root), "--format", "json").json()
    assert data["affected_services"] == ["api", "web"]
    assert data["stats"]["excluded_files"] == 2
    assert data["stats"]["files"] == 2
    factors = {f["rule"]: f for f in data["risk"]["factors"]}
    assert factors["payments"]["weight"] == 25
    assert factors["payments"]["reason"] == "Payments code needs a second reviewer"
    assert "untested-code" not in factors
    assert data["strategy"]["environment"] == "production"
    staging = cli(
        "analyze", "--repo", str(base_repo.root), "--format", "json", "--environment", "staging"
    ).json()
    assert staging["strategy"]["environment"] == "staging"


def test_changes_outside_every_service_deploy_nothing(base_repo, cli):
    base_repo.commit("config", {".github/pipeline-bot.yml": GOOD})
    base_repo.commit("tools", {"scripts/cleanup.py": "print('x')\n"})
    data = cli("analyze", "--repo", str(base_repo.root), "--format", "json").json()
    assert data["affected_services"] == []
    assert data["strategy"]["name"] == "none"


def test_docs_and_tests_inside_a_service_do_not_make_it_deploy(base_repo, cli):
    base_repo.commit("config", {".github/pipeline-bot.yml": GOOD})
    base_repo.commit(
        "docs",
        {
            "services/api/README.md": "# API\n",
            "services/api/tests/test_x.py": "def test_x():\n    pass\n",
        },
    )
    data = cli("analyze", "--repo", str(base_repo.root), "--format", "json").json()
    assert data["affected_services"] == []
    assert data["strategy"]["name"] == "none"


def test_a_custom_rule_with_a_built_in_id_replaces_its_weight(base_repo, cli):
    base_repo.commit(
        "config",
        {
            ".github/pipeline-bot.yml": (
                "version: 1\nrisk:\n  rules:\n    - id: migration\n      paths: ['db/**']\n"
                "      weight: 50\n      message: Our migrations lock tables\n"
            )
        },
    )
    base_repo.commit("migrate", {"db/migrations/0002.sql": "ALTER TABLE t ADD c int;\n"})
    data = cli("analyze", "--repo", str(base_repo.root), "--format", "json").json()
    migration = [f for f in data["risk"]["factors"] if f["rule"] == "migration"]
    assert [(f["weight"], f["reason"]) for f in migration] == [(50, "Our migrations lock tables")]
    # the repository's own rule adds its weight on top of the model's probability
    assert data["risk"]["score"] == min(100, round(100 * data["risk"]["probability"]) + 50)

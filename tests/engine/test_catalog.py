from __future__ import annotations

from pathlib import Path

import pytest

from engine.catalog import CatalogError, TargetSpec, load_catalog
from engine.executors.plugin import specs
from engine.ports import WaitingParams
from tests.engine.conftest import PLAYBOOK
from tests.engine.fakes import FakeExecutor

SPECS = {"fake": FakeExecutor().spec}


def write(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "pb"
    folder.mkdir(exist_ok=True)
    (folder / "bad.yml").write_text(text)
    return folder


def error_for(tmp_path: Path, text: str) -> CatalogError:
    with pytest.raises(CatalogError) as caught:
        load_catalog([write(tmp_path, text)], SPECS, builtins=False)
    return caught.value


def good(tier: int = 2, approval: str = "") -> str:
    return PLAYBOOK.format(tier=tier, timeout=5, approval=approval, more_steps="")


def test_builtins_load_with_the_shipped_executors():
    catalog = load_catalog([], specs())
    playbook = catalog.playbook_for("sqlite_wal_too_large")
    assert playbook is not None and playbook.id == "sqlite-wal-checkpoint" and playbook.tier == 2


def test_every_shipped_check_that_waits_tells_the_engine_through_waiting_params():
    """The engine gives a check's call its `within_s` only when the model is a WaitingParams."""
    waiting = [
        (executor, check, model)
        for executor, spec in specs().items()
        for check, model in spec.checks.items()
        if "within_s" in model.model_fields
    ]
    assert waiting  # the shipped executors do have such checks
    for executor, check, model in waiting:
        assert issubclass(model, WaitingParams), f"{executor} check {check}"


def test_a_misspelt_field_names_file_line_and_field(tmp_path):
    error = error_for(tmp_path, good().replace("    tier: 2", "    tierr: 2"))
    assert error.file.endswith("bad.yml")
    assert error.field == "playbooks[0].tierr"
    assert error.line == good().splitlines().index("    tier: 2") + 1
    assert (
        str(error)
        == f"{error.file}:{error.line}: playbooks[0].tierr: unknown field (did you mean 'tier'?)"
    )


def test_a_wrong_type_names_the_field(tmp_path):
    error = error_for(tmp_path, good().replace("tier: 2", "tier: two"))
    assert error.field == "playbooks[0].tier"


def test_an_unknown_action_is_refused_at_load(tmp_path):
    error = error_for(tmp_path, good().replace("action: fix", "action: rm_rf"))
    assert error.field == "playbooks[0].steps[0].action"
    assert "unknown action 'rm_rf' for executor fake (known: fix)" in error.message
    assert error.line == good().splitlines().index("      - {action: fix, timeout: 5}") + 1


def test_a_parameter_the_action_does_not_take_is_refused(tmp_path):
    text = (Path(__file__).parents[2] / "engine/builtin/playbooks/sqlite.yml").read_text()
    folder = write(
        tmp_path,
        text.replace("params: {mode: TRUNCATE}", "params: {mode: 7}").replace(
            "id: sqlite-wal-checkpoint", "id: my-checkpoint"
        ),
    )
    with pytest.raises(CatalogError) as caught:
        load_catalog([folder], specs())
    assert caught.value.field == "playbooks[0].steps[0].params.mode"


def test_unknown_executor(tmp_path):
    error = error_for(tmp_path, good().replace("executor: fake", "executor: ssh"))
    assert (
        error.field == "playbooks[0].target.executor" and "unknown executor 'ssh'" in error.message
    )


def test_broken_yaml_names_the_line(tmp_path):
    error = error_for(tmp_path, "patterns:\n  - id: x\n    problem: [unclosed\n")
    assert error.line is not None and "invalid YAML" in error.message


def test_duplicate_ids_name_the_first_file(tmp_path):
    folder = write(tmp_path, good())
    (folder / "again.yml").write_text(good())
    with pytest.raises(CatalogError) as caught:
        load_catalog([folder], SPECS, builtins=False)
    assert "already defined in" in caught.value.message


def test_a_playbook_treating_nothing_known(tmp_path):
    error = error_for(tmp_path, good().replace("treats: [thing_broken]", "treats: [thing_brokn]"))
    assert "no pattern diagnoses 'thing_brokn'" in error.message


def test_a_bad_regex_is_refused(tmp_path):
    error = error_for(tmp_path, good().replace('{thing: ".+"}', '{thing: "(["}'))
    assert error.field == "patterns[0].labels" and "invalid regex" in error.message


def test_missing_folder(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog([tmp_path / "nope"], SPECS, builtins=False)


def test_a_playbook_may_not_need_fewer_approvals_than_its_tier(tmp_path):
    error = error_for(tmp_path, good(tier=3, approval="    approval: {required: 1}\n"))
    assert error.field == "playbooks[0]" and "only be stricter than its tier" in error.message


def test_a_tier1_playbook_cannot_carry_an_approval_rule(tmp_path):
    error = error_for(tmp_path, good(tier=1, approval="    approval: {required: 1}\n"))
    assert "raise its tier" in error.message


@pytest.mark.parametrize(
    ("target", "labels", "name"),
    [
        ({"from_label": "db_path"}, {"db_path": "/srv/a.db"}, "/srv/a.db"),
        ({"from_label": "asg", "kind": "asg"}, {"asg": "web"}, "asg:web"),
        (
            {"from_label": "deployment", "scope_label": "namespace", "kind": "deployment"},
            {"namespace": "shop", "deployment": "cart"},
            "deployment:shop/cart",
        ),
        ({"from_label": "deployment", "scope_label": "namespace"}, {"deployment": "cart"}, None),
        ({"from_label": "db_path"}, {"db_path": ""}, None),
    ],
)
def test_a_target_name_is_made_from_its_labels(target, labels, name):
    spec = TargetSpec(executor="x", **target)
    assert spec.name_from(labels) == name


def test_a_typed_target_gives_the_labels_it_stands_for():
    scoped = TargetSpec(executor="k8s", from_label="deployment", scope_label="namespace")
    assert scoped.labels_for("shop/cart") == {"namespace": "shop", "deployment": "cart"}
    assert scoped.name_from(scoped.labels_for("shop/cart")) == "shop/cart"
    assert scoped.shape == "namespace/deployment"
    plain = TargetSpec(executor="sqlite", from_label="db_path")
    assert plain.labels_for("/srv/a.db") == {"db_path": "/srv/a.db"}

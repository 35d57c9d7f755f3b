"""The kubernetes executor against kmock's Kubernetes emulator on loopback,
reached through a real kubeconfig and the official asyncio client, with a fake
deployment controller filling in status: healthy, stuck, or past its progress
deadline. No mocks: a broken request or a wrong verdict fails here."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from engine.catalog import Catalog
from engine.executors.k8s import (
    ConfigSource,
    KubernetesExecutor,
    KubernetesRefused,
    find_config,
)
from engine.intake.alertmanager import AlertmanagerAlert, AlertmanagerPayload, parse_alertmanager
from engine.models import (
    Alert,
    CheckResult,
    Plan,
    PlannedBenchmark,
    PlannedCheck,
    PlannedStep,
    Snapshot,
    StepResult,
    Target,
)
from engine.planning import make_plan
from engine.ports import Executor, TargetRefused, TransientError
from tests.engine.executors.conftest import FixedClock, builtin_catalog, step_snapshot
from tests.k8s_cluster import (
    NAMESPACE,
    RESTARTED_AT,
    Cluster,
    FakeController,
    Mode,
    cluster,
    controller,
    kubeconfig,
    pod_name,
    pod_template_hash,
    write_kubeconfig,
)

__all__ = ["cluster", "controller", "kubeconfig"]  # fixtures, used by name

ALLOWLIST = ["deployment:shop/*"]
CART = Target(executor="kubernetes", name="deployment:shop/cart")
CHECKOUT = Target(executor="kubernetes", name="deployment:shop/checkout")
STAMP = "2026-11-24T03:00:00Z"  # FixedClock's time, as kubectl writes restartedAt
RESTART = PlannedStep(action="rollout_restart", timeout_s=30)
ROLLED_OUT = PlannedCheck(check="rollout_complete", params={"within_s": 10})


def rollout_within(seconds: float) -> PlannedCheck:
    return PlannedCheck(check="rollout_complete", params={"within_s": seconds})


def scale(**params: Any) -> PlannedStep:
    return PlannedStep(action="scale", params=params, timeout_s=30)


def at_least(count: int) -> PlannedCheck:
    return PlannedCheck(check="available_replicas_at_least", params={"count": count})


def restarted_at(deployment: dict[str, Any]) -> str | None:
    return deployment["spec"]["template"]["metadata"].get("annotations", {}).get(RESTARTED_AT)


async def eventually(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    """Poll with a deadline: the emulator and controller run in this event loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


@pytest.fixture
async def executor(kubeconfig: Path, clock: FixedClock) -> AsyncIterator[KubernetesExecutor]:
    executor = KubernetesExecutor(clock, kubeconfig=kubeconfig, poll_s=0.01)
    try:
        yield executor
    finally:
        await executor.aclose()


def test_satisfies_the_executor_port(executor: KubernetesExecutor) -> None:
    port: Executor = executor
    assert port.name == "kubernetes"
    assert set(port.spec.actions) == {"rollout_restart", "scale"}
    assert set(port.spec.checks) == {"rollout_complete", "available_replicas_at_least"}
    assert set(port.spec.benchmarks) == set()


# -- targets ----------------------------------------------------------------------


def test_resolves_an_allowlisted_deployment(executor: KubernetesExecutor) -> None:
    assert executor.resolve_target("deployment:shop/cart", ALLOWLIST) == CART


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("statefulset:shop/db", "the kind must be deployment or pod"),
        ("shop/cart", "the kind must be deployment or pod"),
        ("deployment:Shop/cart", "'Shop' is not a valid namespace name"),
        ("deployment:/cart", "'' is not a valid namespace name"),
        ("deployment:shop/../kube-system/x", "'../kube-system/x' is not a valid deployment name"),
        ("deployment:shop/cart;rm -rf", "is not a valid deployment name"),
        ("deployment:shop/", "'' is not a valid deployment name"),
        ("deployment:shop/" + "a" * 254, "is not a valid deployment name"),
        ("deployment:" + "a" * 64 + "/cart", "is not a valid namespace name"),
        ("deployment:payments/cart", "'deployment:payments/cart' is not in the kubernetes allow"),
    ],
)
def test_refuses_bad_or_unlisted_targets_offline(
    executor: KubernetesExecutor, cluster: Cluster, value: str, why: str
) -> None:
    with pytest.raises(TargetRefused, match=why.replace(".", r"\.")):
        executor.resolve_target(value, ALLOWLIST)
    assert list(cluster) == []  # refused before any call


def test_refuses_everything_with_an_empty_allowlist(executor: KubernetesExecutor) -> None:
    with pytest.raises(TargetRefused, match="no kubernetes targets are allowlisted"):
        executor.resolve_target("deployment:shop/cart", [])


def test_a_pod_resolves_to_the_deployment_that_owns_it(
    executor: KubernetesExecutor, cluster: Cluster
) -> None:
    pod = pod_name(cluster.deployment(NAMESPACE, "cart"))
    assert executor.resolve_target(f"pod:shop/{pod}", ALLOWLIST) == CART
    dashed = "web-frontend-7c5b9d8f64-q4x2v"
    assert executor.resolve_target(f"pod:shop/{dashed}", ALLOWLIST).name == (
        "deployment:shop/web-frontend"
    )


@pytest.mark.parametrize(
    "pod",
    ["postgres-0", "cart-x2w9z", "cart-5d8f9c7b6-x2w9", "cart-5d8f9c7b6-x0w9z", "cart-0a1-bcdfg"],
)
def test_a_pod_not_named_like_a_deployments_is_refused(
    executor: KubernetesExecutor, pod: str
) -> None:
    with pytest.raises(TargetRefused, match="is not named like a Deployment's pod"):
        executor.resolve_target(f"pod:shop/{pod}", ALLOWLIST)


def test_a_pod_of_a_deployment_outside_the_allowlist_is_refused(
    executor: KubernetesExecutor,
) -> None:
    with pytest.raises(
        TargetRefused,
        match=r"'deployment:payments/api' \(the Deployment of pod payments/api-7c5b9d8f64-q4x2v\)",
    ):
        executor.resolve_target("pod:payments/api-7c5b9d8f64-q4x2v", ALLOWLIST)


# -- availability -------------------------------------------------------------------


async def test_available_through_a_kubeconfig(
    executor: KubernetesExecutor, kubeconfig: Path, cluster: Cluster
) -> None:
    availability = await executor.available()
    assert availability.ok, availability.reason
    assert availability.reason == (
        f"kubeconfig {kubeconfig} -> {str(cluster.url).rstrip('/')}, Kubernetes v1.26.4+k3s1"
    )


async def test_unavailable_without_a_kubeconfig_until_one_is_written(
    cluster: Cluster, clock: FixedClock, tmp_path: Path
) -> None:
    path = tmp_path / "kubeconfig"
    executor = KubernetesExecutor(clock, kubeconfig=path)
    try:
        availability = await executor.available()
        assert not availability.ok
        assert availability.reason == f"no kubeconfig at {path}"
        write_kubeconfig(path, str(cluster.url).rstrip("/"))
        assert (await executor.available()).ok
    finally:
        await executor.aclose()


async def test_unavailable_with_no_kubeconfig_anywhere_and_no_cluster(
    clock: FixedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    availability = await KubernetesExecutor(clock).available()
    assert not availability.ok
    assert availability.reason == (
        f"no kubeconfig at {tmp_path}/.kube/config and not running in a cluster "
        "(KUBERNETES_SERVICE_HOST is not set)"
    )


async def test_the_kubeconfig_variable_is_used(
    kubeconfig: Path, clock: FixedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path}/missing:{kubeconfig}")
    executor = KubernetesExecutor(clock)
    try:
        availability = await executor.available()
        assert availability.ok, availability.reason
        assert availability.reason.startswith(f"kubeconfig {kubeconfig} -> http://127.0.0.1:")
    finally:
        await executor.aclose()


def test_in_a_cluster_without_a_kubeconfig_the_service_account_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    source = find_config(None)
    assert source == ConfigSource(None)
    assert str(source) == "in-cluster service account"


async def test_unavailable_with_an_unknown_context(kubeconfig: Path, clock: FixedClock) -> None:
    executor = KubernetesExecutor(clock, kubeconfig=kubeconfig, context="prod")
    availability = await executor.available()
    assert not availability.ok
    assert availability.reason.startswith(
        f"kubeconfig {kubeconfig} (context prod) cannot be loaded"
    )
    assert "prod" in availability.reason.split("cannot be loaded: ")[1]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def unreachable(clock: FixedClock, tmp_path: Path) -> AsyncIterator[KubernetesExecutor]:
    """An executor whose kubeconfig names a port nothing listens on."""
    path = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{closed_port()}")
    executor = KubernetesExecutor(clock, kubeconfig=path)
    try:
        yield executor
    finally:
        await executor.aclose()


async def test_unavailable_when_the_api_server_does_not_answer(
    unreachable: KubernetesExecutor,
) -> None:
    availability = await unreachable.available()
    assert not availability.ok
    assert "cannot get version: the API server at http://127.0.0.1:" in availability.reason
    assert "does not answer" in availability.reason


# -- rollout restart -------------------------------------------------------------------


async def test_restart_sets_restarted_at_and_the_rollout_completes(
    executor: KubernetesExecutor, cluster: Cluster, controller: FakeController
) -> None:
    before = cluster.deployment(NAMESPACE, "cart")

    result = await executor.run(RESTART, CART, step_snapshot(CART))

    assert result.ok, result.detail
    after = cluster.deployment(NAMESPACE, "cart")
    assert restarted_at(after) == STAMP
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert result.detail == (
        f"rollout restart of deployment shop/cart: {RESTARTED_AT} set to {STAMP} (was unset), "
        "generation 2; its 3 pods are replaced as the rollout proceeds"
    )
    assert cluster.writes() == ["PATCH /apis/apps/v1/namespaces/shop/deployments/cart"]
    [patch] = [r for r in cluster if r.method.value == "PATCH"]
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert patch.data == {
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: STAMP}}}}
    }

    rolled = await executor.check(ROLLED_OUT, CART)
    assert rolled.ok, rolled.detail
    assert rolled.detail == (
        "deployment shop/cart successfully rolled out: 3 of 3 replicas updated and available "
        "(generation 2)"
    )
    assert (await executor.check(at_least(3), CART)).ok
    # The pods run the new template, its annotation included.
    assert pod_template_hash(after["spec"]["template"]) != pod_template_hash(
        before["spec"]["template"]
    )


async def test_rollout_complete_waits_for_a_rollout_that_gets_going(
    executor: KubernetesExecutor, cluster: Cluster, controller: FakeController
) -> None:
    controller.set_mode(Mode.STUCK)
    assert (await executor.run(RESTART, CART, step_snapshot(CART))).ok
    reads = cluster.reads_of(NAMESPACE, "cart")

    waiting = asyncio.create_task(executor.check(ROLLED_OUT, CART))
    await eventually(lambda: cluster.reads_of(NAMESPACE, "cart") >= reads + 3)
    assert not waiting.done()  # still stuck: it kept looking
    controller.set_mode(Mode.HEALTHY)
    result = await waiting

    assert result.ok, result.detail
    assert "successfully rolled out" in result.detail


async def test_a_stuck_rollout_fails_once_its_time_is_up(
    executor: KubernetesExecutor, cluster: Cluster, controller: FakeController
) -> None:
    controller.set_mode(Mode.STUCK)
    assert (await executor.run(RESTART, CART, step_snapshot(CART))).ok

    result = await executor.check(rollout_within(0.3), CART)

    assert not result.ok
    assert result.detail == (
        "deployment shop/cart did not finish rolling out within 0.3 s: waiting for the rollout: "
        "3 old replicas are pending termination"
    )


async def test_a_progress_deadline_fails_at_once_with_its_message(
    executor: KubernetesExecutor, cluster: Cluster, controller: FakeController
) -> None:
    controller.set_mode(Mode.DEADLINE_EXCEEDED)
    assert (await executor.run(RESTART, CART, step_snapshot(CART))).ok
    template = pod_template_hash(cluster.deployment(NAMESPACE, "cart")["spec"]["template"])
    loop = asyncio.get_running_loop()
    started = loop.time()

    result = await executor.check(rollout_within(60), CART)

    assert loop.time() - started < 5  # the verdict, not the 60 s wait
    assert not result.ok
    assert result.detail == (
        "deployment shop/cart exceeded its progress deadline: "
        f'ReplicaSet "cart-{template}" has timed out progressing.'
    )


async def test_a_generation_the_controller_has_not_seen_is_not_rolled_out(
    executor: KubernetesExecutor, cluster: Cluster
) -> None:
    # No controller runs: the new generation is never observed.
    assert (await executor.run(RESTART, CART, step_snapshot(CART))).ok

    result = await executor.check(rollout_within(0.1), CART)

    assert not result.ok
    assert result.detail.endswith(
        "waiting for the rollout: the deployment controller has not observed generation 2 yet "
        "(it has seen 1)"
    )


PROGRESSING = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
TIMED_OUT = {
    "type": "Progressing",
    "status": "False",
    "reason": "ProgressDeadlineExceeded",
    "message": 'ReplicaSet "cart-7c5b9d8f64" has timed out progressing.',
}


@pytest.mark.parametrize(
    ("status", "ok", "detail"),
    [
        (
            {"observedGeneration": 0},
            False,
            "the deployment controller has not observed generation 1 yet (it has seen 0)",
        ),
        ({"updatedReplicas": 1}, False, "1 of 3 new replicas have been updated"),
        ({"replicas": 4}, False, "1 old replicas are pending termination"),
        ({"availableReplicas": 2}, False, "2 of 3 updated replicas are available"),
        (
            {"updatedReplicas": 1, "conditions": [TIMED_OUT]},
            False,
            "deployment shop/cart exceeded its progress deadline: "
            'ReplicaSet "cart-7c5b9d8f64" has timed out progressing.',
        ),
        (
            {"conditions": [PROGRESSING]},
            True,
            "deployment shop/cart successfully rolled out: 3 of 3 replicas updated and available "
            "(generation 1)",
        ),
    ],
)
async def test_rollout_complete_judges_as_kubectl_does(
    executor: KubernetesExecutor, cluster: Cluster, status: dict[str, Any], ok: bool, detail: str
) -> None:
    # No controller: the status stays as written, on a Deployment of 3 replicas.
    cluster.objects["apps/v1/deployments", NAMESPACE, "cart"].patch({"status": status})

    result = await executor.check(rollout_within(0.05), CART)

    assert result.ok is ok
    assert result.detail.endswith(detail), result.detail


async def test_pods_of_a_scale_up_that_never_get_ready(
    executor: KubernetesExecutor, cluster: Cluster, controller: FakeController
) -> None:
    controller.set_mode(Mode.STUCK)
    assert (await executor.run(scale(replicas=5), CART, step_snapshot(CART))).ok

    rolled = await executor.check(rollout_within(0.2), CART)
    enough = await executor.check(at_least(4), CART)

    assert not rolled.ok
    assert rolled.detail.endswith("waiting for the rollout: 3 of 5 updated replicas are available")
    assert (enough.ok, enough.detail) == (
        False,
        "deployment shop/cart has 3 available replicas < 4",
    )


@pytest.mark.parametrize(
    ("name", "original"), [("cart", None), ("checkout", "2026-11-01T08:00:00Z")]
)
async def test_rollback_of_a_restart_puts_the_annotation_back_and_rolls_back(
    executor: KubernetesExecutor,
    cluster: Cluster,
    controller: FakeController,
    name: str,
    original: str | None,
) -> None:
    target = Target(executor="kubernetes", name=f"deployment:shop/{name}")
    template = cluster.deployment(NAMESPACE, name)["spec"]["template"]
    snapshot = await executor.snapshot(target, incident_id=7)
    assert snapshot.state["restarted_at"] == original
    assert (await executor.run(RESTART, target, snapshot)).ok
    assert restarted_at(cluster.deployment(NAMESPACE, name)) == STAMP

    await executor.restore(snapshot)

    restored = cluster.deployment(NAMESPACE, name)
    assert restarted_at(restored) == original
    assert pod_template_hash(restored["spec"]["template"]) == pod_template_hash(template)
    rolled = await executor.check(ROLLED_OUT, target)
    assert rolled.ok, rolled.detail
    assert restored["metadata"]["generation"] == 3


async def test_snapshot_keeps_what_rollback_needs(
    executor: KubernetesExecutor, clock: FixedClock
) -> None:
    snapshot = await executor.snapshot(CHECKOUT, incident_id=7)

    assert snapshot.state == {
        "uid": "uid-shop-checkout",
        "replicas": 2,
        "restarted_at": "2026-11-01T08:00:00Z",
        "generation": 1,
    }
    assert snapshot.location == (
        "kubernetes deployment shop/checkout: 2 replicas, restartedAt 2026-11-01T08:00:00Z "
        "(generation 1)"
    )
    assert snapshot.taken_at == clock.now()
    assert snapshot.size_bytes == 0
    assert "deployment shop/checkout" in executor.describe_snapshot(CHECKOUT)


async def test_restoring_what_did_not_change_changes_nothing(
    executor: KubernetesExecutor, cluster: Cluster
) -> None:
    snapshot = await executor.snapshot(CART, incident_id=7)
    await executor.restore(snapshot)
    assert cluster.writes() == []


async def test_a_paused_deployment_is_not_restarted(
    executor: KubernetesExecutor, cluster: Cluster
) -> None:
    cluster.add_deployment(NAMESPACE, "paused", paused=True)
    target = Target(executor="kubernetes", name="deployment:shop/paused")

    result = await executor.run(RESTART, target, step_snapshot(target))

    assert not result.ok
    assert result.detail.startswith("refused: deployment shop/paused is paused")
    assert "kubectl rollout resume deployment/paused -n shop" in result.detail
    assert cluster.writes() == []


async def test_a_second_restart_in_the_same_second_is_retried_later(
    executor: KubernetesExecutor, cluster: Cluster, clock: FixedClock
) -> None:
    assert (await executor.run(RESTART, CART, step_snapshot(CART))).ok
    with pytest.raises(TransientError, match=f"already restarted at {STAMP}"):
        await executor.run(RESTART, CART, step_snapshot(CART))
    clock.current += timedelta(seconds=1)
    assert (await executor.run(RESTART, CART, step_snapshot(CART))).ok
    assert restarted_at(cluster.deployment(NAMESPACE, "cart")) == "2026-11-24T03:00:01Z"
    assert len(cluster.writes()) == 2


# -- scale ------------------------------------------------------------------------------


async def test_scale_goes_through_the_scale_subresource_and_rolls_back(
    executor: KubernetesExecutor, cluster: Cluster, controller: FakeController
) -> None:
    snapshot = await executor.snapshot(CART, incident_id=7)

    result = await executor.run(scale(replicas=5), CART, snapshot)

    assert result.ok, result.detail
    assert result.detail == "scaled deployment shop/cart from 3 to 5 replicas"
    assert cluster.writes() == ["PATCH /apis/apps/v1/namespaces/shop/deployments/cart/scale"]
    assert cluster.deployment(NAMESPACE, "cart")["spec"]["replicas"] == 5
    assert (await executor.check(ROLLED_OUT, CART)).ok
    assert (await executor.check(at_least(5), CART)).ok

    await executor.restore(snapshot)

    assert cluster.deployment(NAMESPACE, "cart")["spec"]["replicas"] == 3
    assert restarted_at(cluster.deployment(NAMESPACE, "cart")) is None  # untouched
    assert cluster.writes()[1:] == ["PATCH /apis/apps/v1/namespaces/shop/deployments/cart/scale"]
    assert (await executor.check(ROLLED_OUT, CART)).ok
    assert cluster.deployment(NAMESPACE, "cart")["status"]["availableReplicas"] == 3


@pytest.mark.parametrize(("delta", "replicas"), [(2, 5), (-1, 2), (-3, 0)])
async def test_scale_by_a_delta(
    executor: KubernetesExecutor, cluster: Cluster, delta: int, replicas: int
) -> None:
    result = await executor.run(scale(delta=delta), CART, step_snapshot(CART))
    assert result.ok, result.detail
    assert cluster.deployment(NAMESPACE, "cart")["spec"]["replicas"] == replicas


@pytest.mark.parametrize(
    ("params", "why"),
    [
        (
            {"delta": -4},
            "refused: scaling deployment shop/cart by -4 from 3 replicas would leave -1",
        ),
        (
            {"delta": 3, "max_replicas": 5},
            "refused: deployment shop/cart would go from 3 to 6 replicas, above max_replicas 5",
        ),
        (
            {"delta": 48},
            "refused: deployment shop/cart would go from 3 to 51 replicas, above max_replicas 50",
        ),
    ],
)
async def test_scale_outside_its_bounds_is_refused_and_changes_nothing(
    executor: KubernetesExecutor, cluster: Cluster, params: dict[str, int], why: str
) -> None:
    result = await executor.run(scale(**params), CART, step_snapshot(CART))
    assert not result.ok
    assert result.detail == why
    assert cluster.writes() == []


async def test_scale_to_the_current_count_changes_nothing(
    executor: KubernetesExecutor, cluster: Cluster
) -> None:
    result = await executor.run(scale(replicas=3), CART, step_snapshot(CART))
    assert result.ok
    assert result.detail == "deployment shop/cart already has 3 replicas; nothing changed"
    assert cluster.writes() == []


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({}, "exactly one of replicas or delta"),
        ({"replicas": 2, "delta": 1}, "exactly one of replicas or delta"),
        ({"replicas": -1}, "greater than or equal to 0"),
        ({"replicas": 51}, "replicas 51 is above max_replicas 50"),
        ({"delta": 0}, "delta 0 would change nothing"),
        ({"replicas": "3"}, "Input should be a valid integer"),
        ({"replicas": 3, "force": True}, "Extra inputs are not permitted"),
    ],
)
async def test_scale_params_are_checked_before_anything_is_called(
    executor: KubernetesExecutor, cluster: Cluster, params: dict[str, Any], why: str
) -> None:
    with pytest.raises(ValidationError, match=why):
        await executor.run(scale(**params), CART, step_snapshot(CART))
    assert list(cluster) == []


async def test_available_replicas_at_least_around_the_count(executor: KubernetesExecutor) -> None:
    assert await executor.check(at_least(2), CHECKOUT) == CheckResult(
        check="available_replicas_at_least",
        ok=True,
        detail="deployment shop/checkout has 2 available replicas >= 2",
    )
    assert await executor.check(at_least(3), CHECKOUT) == CheckResult(
        check="available_replicas_at_least",
        ok=False,
        detail="deployment shop/checkout has 2 available replicas < 3",
    )


# -- what does not exist, what may not be done, what fails for a while ------------------


@pytest.mark.parametrize(
    ("target", "why"),
    [
        (
            "deployment:nope/cart",
            "namespace 'nope' does not exist (looking for deployment nope/cart)",
        ),
        ("deployment:shop/ghost", "deployment 'ghost' does not exist in namespace 'shop'"),
    ],
)
async def test_what_does_not_exist_is_refused_at_the_first_call(
    executor: KubernetesExecutor, cluster: Cluster, target: str, why: str
) -> None:
    resolved = executor.resolve_target(target, ["deployment:*/*"])  # offline: shape only
    with pytest.raises(TargetRefused) as refused:
        await executor.snapshot(resolved, incident_id=7)
    assert str(refused.value) == why
    for step in (RESTART, scale(delta=1)):
        result = await executor.run(step, resolved, step_snapshot(resolved))
        assert (result.ok, result.detail) == (False, why)
    assert await executor.check(ROLLED_OUT, resolved) == CheckResult(
        check="rollout_complete", ok=False, detail=why
    )
    assert cluster.writes() == []


FORBIDDEN = (
    'deployments.apps "cart" is forbidden: User "system:serviceaccount:grace:grace" cannot '
    'patch resource "deployments/scale" in API group "apps" in the namespace "shop"'
)


async def test_a_forbidden_scale_names_the_missing_permission(
    executor: KubernetesExecutor, cluster: Cluster
) -> None:
    path = "/apis/apps/v1/namespaces/shop/deployments/cart/scale"
    cluster.fail("PATCH", path, 403, "Forbidden", FORBIDDEN)

    result = await executor.run(scale(replicas=4), CART, step_snapshot(CART))

    assert not result.ok
    assert result.detail == (
        "forbidden: GRACE's credentials lack permission to patch deployments/scale in "
        f"namespace shop: {FORBIDDEN}"
    )
    assert cluster.deployment(NAMESPACE, "cart")["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("status", "reason"),
    [(429, "TooManyRequests"), (500, "InternalError"), (503, "ServiceUnavailable")],
)
async def test_throttling_and_server_errors_are_transient(
    executor: KubernetesExecutor, cluster: Cluster, status: int, reason: str
) -> None:
    path = "/apis/apps/v1/namespaces/shop/deployments/cart"
    cluster.fail("GET", path, status, reason, "etcdserver: request timed out")

    with pytest.raises(TransientError) as transient:
        await executor.run(RESTART, CART, step_snapshot(CART))

    assert str(transient.value) == (
        f"cannot get deployments shop/cart: the API server answered {status}: "
        "etcdserver: request timed out"
    )
    assert cluster.writes() == []
    assert (await executor.run(RESTART, CART, step_snapshot(CART))).ok  # the retry works


async def test_a_conflicting_write_is_transient(
    executor: KubernetesExecutor, cluster: Cluster
) -> None:
    path = "/apis/apps/v1/namespaces/shop/deployments/cart"
    message = (
        'Operation cannot be fulfilled on deployments.apps "cart": the object has been modified'
    )
    cluster.fail("PATCH", path, 409, "Conflict", message)
    with pytest.raises(TransientError, match="answered 409: Operation cannot be fulfilled"):
        await executor.run(RESTART, CART, step_snapshot(CART))
    assert restarted_at(cluster.deployment(NAMESPACE, "cart")) is None


async def test_rejected_credentials_are_reloaded_for_the_next_try(
    executor: KubernetesExecutor, cluster: Cluster
) -> None:
    cluster.fail(
        "GET", "/apis/apps/v1/namespaces/shop/deployments/cart", 401, "Unauthorized", "Unauthorized"
    )
    with pytest.raises(TransientError, match="the API server rejected the credentials"):
        await executor.check(at_least(1), CART)
    assert (await executor.check(at_least(1), CART)).ok


async def test_a_refused_connection_is_transient(unreachable: KubernetesExecutor) -> None:
    with pytest.raises(TransientError) as transient:
        await unreachable.run(RESTART, CART, step_snapshot(CART))
    said = str(transient.value)
    assert re.match(
        r"cannot get deployments shop/cart: the API server at http://127\.0\.0\.1:", said
    )
    assert "does not answer: Cannot connect to host" in said


async def test_restore_refuses_a_deployment_created_again(
    executor: KubernetesExecutor, cluster: Cluster
) -> None:
    snapshot = await executor.snapshot(CART, incident_id=7)
    assert (await executor.run(scale(replicas=5), CART, snapshot)).ok
    cluster.add_deployment(NAMESPACE, "cart", replicas=5)
    cluster.objects["apps/v1/deployments", NAMESPACE, "cart"].patch(
        {"metadata": {"uid": "uid-new"}}
    )

    with pytest.raises(
        KubernetesRefused, match=r"deleted and created again .*uid-shop-cart -> uid-new"
    ):
        await executor.restore(snapshot)
    assert cluster.deployment(NAMESPACE, "cart")["spec"]["replicas"] == 5


async def test_restore_of_a_deleted_deployment_fails_clearly(
    executor: KubernetesExecutor, cluster: Cluster
) -> None:
    snapshot = await executor.snapshot(CART, incident_id=7)
    cluster.objects["apps/v1/deployments", NAMESPACE, "cart"].delete()
    with pytest.raises(
        KubernetesRefused,
        match="cannot restore deployment shop/cart: deployment 'cart' does not exist in",
    ):
        await executor.restore(snapshot)


async def test_rejects_unknown_names_and_foreign_targets(executor: KubernetesExecutor) -> None:
    with pytest.raises(ValueError, match="unknown kubernetes action 'delete'"):
        await executor.run(PlannedStep(action="delete", timeout_s=5), CART, step_snapshot(CART))
    with pytest.raises(ValueError, match="unknown kubernetes check 'healthy'"):
        await executor.check(PlannedCheck(check="healthy"), CART)
    with pytest.raises(ValueError, match="unknown kubernetes benchmark 'latency'"):
        await executor.measure(PlannedBenchmark(benchmark="latency", tolerance=0.5), CART)
    foreign = Target(executor="sqlite", name="deployment:shop/cart")
    with pytest.raises(ValueError, match="belongs to 'sqlite'"):
        await executor.snapshot(foreign, incident_id=1)


# -- built-in patterns and playbooks, from a realistic alert to a verified result -----


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return builtin_catalog(tmp_path, "kubernetes")


def kube_state_metrics_alert(name: str, labels: dict[str, str], description: str) -> Alert:
    """As kube-prometheus' kubernetes-mixin sends it through Alertmanager."""
    payload = AlertmanagerPayload(
        groupKey=f'{{}}/{{severity="warning"}}:{{alertname="{name}"}}',
        receiver="grace",
        alerts=[
            AlertmanagerAlert(
                status="firing",
                labels={
                    "alertname": name,
                    "job": "kube-state-metrics",
                    "instance": "10.0.3.7:8080",
                    "prometheus": "monitoring/k8s",
                    "severity": "warning",
                    **labels,
                },
                annotations={
                    "description": description,
                    "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/"
                    + name.lower(),
                },
                startsAt=datetime(2026, 11, 24, 2, 45, tzinfo=UTC),
            )
        ],
    )
    (alert,) = parse_alertmanager(
        payload.model_dump_json().encode(), received_at=datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    )
    return alert


def crash_looping(pod: str) -> Alert:
    return kube_state_metrics_alert(
        "KubePodCrashLooping",
        {"namespace": "shop", "pod": pod, "container": "cart", "reason": "CrashLoopBackOff"},
        f'Pod shop/{pod} (cart) is in waiting state (reason: "CrashLoopBackOff").',
    )


def replicas_mismatch(namespace: str = "shop", deployment: str = "cart") -> Alert:
    return kube_state_metrics_alert(
        "KubeDeploymentReplicasMismatch",
        {"namespace": namespace, "deployment": deployment},
        f"Deployment {namespace}/{deployment} has not matched the expected number of replicas "
        "for longer than 15 minutes.",
    )


def rollout_stuck() -> Alert:
    return kube_state_metrics_alert(
        "KubeDeploymentRolloutStuck",
        {"namespace": "shop", "deployment": "cart"},
        "Rollout of deployment shop/cart is not progressing for longer than 15 minutes.",
    )


@dataclass
class Healed:
    plan: Plan
    snapshots: list[Snapshot]
    steps: list[StepResult]
    checks: list[CheckResult]
    rolled_back: bool


async def heal(executor: KubernetesExecutor, plan: Plan) -> Healed:
    """What the engine does with an approved plan: a snapshot before each step,
    the steps, the checks, and on a failure every snapshot restored, newest first."""
    snapshots: list[Snapshot] = []
    steps: list[StepResult] = []
    for step in plan.steps:
        snapshots.append(await executor.snapshot(plan.target, incident_id=9))
        steps.append(await executor.run(step, plan.target, snapshots[-1]))
    checks = [await executor.check(c, plan.target) for c in plan.checks]
    failed = not all(s.ok for s in steps) or not all(c.ok for c in checks)
    if failed:
        for snapshot in reversed(snapshots):
            await executor.restore(snapshot)
    return Healed(plan, snapshots, steps, checks, failed)


def plan_for(catalog: Catalog, alert: Alert, executor: KubernetesExecutor) -> Plan:
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None, alert
    playbook = catalog.playbook_for(diagnosis.problem)
    assert playbook is not None
    return make_plan(playbook, alert, executor, ALLOWLIST)


def test_builtins_load_with_their_ids_and_tiers(catalog: Catalog) -> None:
    assert {p.id: p.tier for p in catalog.playbooks} == {
        "k8s-restart-crash-looping": 2,
        "k8s-restart-deployment": 2,
        "k8s-scale-up": 2,
    }
    chosen = {
        problem: getattr(catalog.playbook_for(problem), "id", None)
        for problem in (
            "k8s_pod_crash_looping",
            "k8s_deployment_unavailable",
            "k8s_deployment_rollout_stuck",
        )
    }
    assert chosen == {
        "k8s_pod_crash_looping": "k8s-restart-crash-looping",
        "k8s_deployment_unavailable": "k8s-restart-deployment",
        "k8s_deployment_rollout_stuck": "k8s-restart-deployment",
    }


async def test_a_crash_looping_pod_heals_by_restarting_its_deployment(
    catalog: Catalog, executor: KubernetesExecutor, cluster: Cluster, controller: FakeController
) -> None:
    pod = pod_name(cluster.deployment(NAMESPACE, "cart"))
    alert = crash_looping(pod)
    diagnosis = catalog.diagnose(alert)
    assert diagnosis is not None and diagnosis.problem == "k8s_pod_crash_looping"
    assert diagnosis.explanation.startswith(f"Pod shop/{pod} keeps crashing")

    healed = await heal(executor, plan_for(catalog, alert, executor))

    assert healed.plan.playbook_id == "k8s-restart-crash-looping"
    assert healed.plan.target == CART
    assert [s.action for s in healed.steps] == ["rollout_restart"]
    assert all(s.ok for s in healed.steps), healed.steps
    assert [c.check for c in healed.checks] == ["rollout_complete", "available_replicas_at_least"]
    assert all(c.ok for c in healed.checks), healed.checks
    assert not healed.rolled_back
    assert restarted_at(cluster.deployment(NAMESPACE, "cart")) == STAMP
    assert pod_name(cluster.deployment(NAMESPACE, "cart")) != pod  # its pods were replaced


async def test_a_replicas_mismatch_whose_restart_times_out_is_rolled_back(
    catalog: Catalog, executor: KubernetesExecutor, cluster: Cluster, controller: FakeController
) -> None:
    controller.set_mode(Mode.DEADLINE_EXCEEDED)
    before = cluster.deployment(NAMESPACE, "checkout")

    healed = await heal(
        executor, plan_for(catalog, replicas_mismatch(deployment="checkout"), executor)
    )

    assert healed.plan.playbook_id == "k8s-restart-deployment"
    assert healed.plan.target == CHECKOUT
    assert all(s.ok for s in healed.steps), healed.steps
    assert not healed.checks[0].ok
    assert "exceeded its progress deadline" in healed.checks[0].detail
    assert healed.rolled_back
    after = cluster.deployment(NAMESPACE, "checkout")
    assert restarted_at(after) == "2026-11-01T08:00:00Z"
    assert after["spec"]["template"] == before["spec"]["template"]
    controller.set_mode(Mode.HEALTHY)  # the old pods come back
    assert (await executor.check(ROLLED_OUT, CHECKOUT)).ok


def test_a_stuck_rollout_alert_gets_the_restart(
    catalog: Catalog, executor: KubernetesExecutor
) -> None:
    plan = plan_for(catalog, rollout_stuck(), executor)
    assert plan.playbook_id == "k8s-restart-deployment"
    assert plan.target == CART
    assert plan.tier == 2 and plan.required_approvals == 1


def test_an_alert_for_a_namespace_outside_the_allowlist_is_refused(
    catalog: Catalog, executor: KubernetesExecutor, cluster: Cluster
) -> None:
    with pytest.raises(
        TargetRefused, match="'deployment:kube-system/coredns' is not in the kubernetes allowlist"
    ):
        plan_for(catalog, replicas_mismatch("kube-system", "coredns"), executor)
    assert list(cluster) == []


async def test_scale_up_asked_for_by_a_person(
    catalog: Catalog, executor: KubernetesExecutor, cluster: Cluster, controller: FakeController
) -> None:
    playbook = catalog.playbook("k8s-scale-up")
    assert playbook is not None
    alert = Alert(
        source="manual",
        source_key="manual:1",
        name=playbook.id,
        labels=playbook.target.labels_for("shop/cart"),
        received_at=datetime(2026, 11, 24, 3, 0, tzinfo=UTC),
    )

    healed = await heal(executor, make_plan(playbook, alert, executor, ALLOWLIST))

    assert healed.plan.target == CART
    assert [(s.ok, s.detail) for s in healed.steps] == [
        (True, "scaled deployment shop/cart from 3 to 4 replicas")
    ]
    assert all(c.ok for c in healed.checks), healed.checks
    assert cluster.deployment(NAMESPACE, "cart")["spec"]["replicas"] == 4

"""Reading alerts as teams name them: the built-in patterns, their facts, and honest refusals.

The built-in catalog and the real executors' allowlist checks (all offline),
so what is proven here is what GRACE proposes for these alerts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.catalog import Catalog, load_catalog
from engine.clock import SystemClock
from engine.executors.aws import AwsExecutor
from engine.executors.containers import DockerExecutor
from engine.executors.files import FilesExecutor
from engine.executors.k8s import KubernetesExecutor
from engine.executors.service import ServiceConfig, ServiceExecutor
from engine.executors.sqlite import SqliteExecutor
from engine.intake.slack import parse_slack_message
from engine.models import Alert, Availability
from engine.ports import Executor
from engine.proposal import Proposal, Refused, propose

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


class Reader:
    """The built-in catalog and every executor, with allowlists under a temp root."""

    def __init__(self, root: Path) -> None:
        clock = SystemClock()
        self.db = root / "var/lib/app/orders.db"
        self.db.parent.mkdir(parents=True)
        self.db.write_bytes(b"")
        self.app = root / "srv/app"
        (self.app / "orders").mkdir(parents=True)
        service = ServiceConfig(health_url="http://127.0.0.1:8080/healthz")  # type: ignore[arg-type]
        self.executors: dict[str, Executor] = {
            "sqlite": SqliteExecutor(root / "snapshots", clock),
            "files": FilesExecutor(root / "snapshots", clock),
            "service": ServiceExecutor(
                {"api": service, "web": service, "orders-worker": service},
                root / "snapshots",
                clock,
            ),
            "docker": DockerExecutor(clock),
            "kubernetes": KubernetesExecutor(clock),
            "aws": AwsExecutor(clock, region="us-east-1"),
        }
        self.allowlists = {
            "sqlite": [f"{root}/var/lib/app/*.db"],
            "files": [str(self.app)],
            "service": ["api", "web", "orders-worker"],
            "docker": ["container:web-*"],
            "kubernetes": ["deployment:shop/*"],
            "aws": ["asg:web-*"],
        }
        self.catalog: Catalog = load_catalog([], {n: e.spec for n, e in self.executors.items()})

    async def propose(self, alert: Alert) -> Proposal:
        return await propose(alert, self.catalog, self.executors, self.allowlists, _ready)

    async def refusal(self, alert: Alert) -> str:
        with pytest.raises(Refused) as caught:
            await self.propose(alert)
        return str(caught.value)


async def _ready(executor: Executor) -> Availability:
    return Availability(ok=True)


@pytest.fixture
def reader(tmp_path: Path) -> Reader:
    return Reader(tmp_path)


def alert(alertname: str, text: str = "", /, **labels: str) -> Alert:
    return Alert(
        source="alertmanager",
        source_key=alertname,
        name=alertname,
        labels={"alertname": alertname, **labels},
        text=text,
        received_at=NOW,
    )


def said(words: str) -> Alert:
    """A person's message in an alert channel, read as the Slack listener reads it."""
    event = {"type": "message", "user": "U0ONCALL", "text": words, "ts": "1765000000.000100"}
    read = parse_slack_message(event, channel="C0ALERTS", received_at=NOW)
    assert read is not None, words
    return read


# -- names and targets as rule sets spell them -------------------------------------


@pytest.mark.parametrize("label", ["name", "container", "container_name"])
async def test_a_container_is_found_in_whichever_label_names_it(reader, label):
    proposal = await reader.propose(alert("ContainerUnhealthy", **{label: "web-1"}))
    assert proposal.diagnosis.problem == "docker_container_unhealthy"
    assert proposal.plan.target.name == "container:web-1"


async def test_the_first_candidate_label_wins(reader):
    proposal = await reader.propose(alert("ContainerKilled", name="web-2", container="web-9"))
    assert proposal.plan.target.name == "container:web-2"


async def test_a_systemd_unit_is_its_service_without_the_suffix(reader):
    proposal = await reader.propose(
        alert("NodeSystemdServiceFailed", name="orders-worker.service", state="failed")
    )
    assert proposal.diagnosis.problem == "service_unhealthy"
    assert proposal.plan.target.name == "orders-worker"
    assert "orders-worker has failed" in proposal.diagnosis.explanation


async def test_a_pod_of_kube_state_metrics_is_restarted_through_its_deployment(reader):
    labels = {"namespace": "shop", "pod": "checkout-7d9f8b6c5-x2kqp", "container": "app"}
    proposal = await reader.propose(alert("KubernetesPodCrashLooping", **labels))
    assert proposal.plan.target.name == "deployment:shop/checkout"


async def test_crash_loop_back_off_in_the_text_is_a_crash_loop(reader):
    labels = {"namespace": "shop", "pod": "checkout-7d9f8b6c5-x2kqp", "reason": "x"}
    text = "Container app in pod checkout is waiting: CrashLoopBackOff"
    proposal = await reader.propose(alert("KubeContainerWaiting", text, **labels))
    assert proposal.diagnosis.problem == "k8s_pod_crash_looping"


async def test_an_oom_kill_goes_to_the_playbook_its_labels_fit(reader):
    k8s = await reader.propose(
        alert("KubernetesContainerOomKiller", namespace="shop", pod="cart-5f7c9d8b4-x2kqp")
    )
    assert (k8s.diagnosis.problem, k8s.plan.target.name) == (
        "container_oom_killed",
        "deployment:shop/cart",
    )
    docker = await reader.propose(alert("DockerEvent", "web-3 exited with code 137", name="web-3"))
    assert (docker.diagnosis.problem, docker.plan.target.name) == (
        "container_oom_killed",
        "container:web-3",
    )


async def test_database_is_locked_in_an_error_with_its_path_in_the_text(reader):
    text = f"OperationalError: database is locked\nwhile writing {reader.db}"
    proposal = await reader.propose(alert("OperationalError: database is locked", text))
    assert proposal.diagnosis.problem == "sqlite_database_locked"
    assert proposal.plan.target.name == str(reader.db)


async def test_a_bad_magic_number_clears_the_folder_of_the_failing_module(reader):
    text = (
        "ImportError: bad magic number in 'orders.views': b'\\x03\\xf3\\r\\n'\n"
        f'  File "{reader.app}/orders/views.py", line 3, in <module>'
    )
    proposal = await reader.propose(alert("ImportError", text))
    assert proposal.diagnosis.problem == "stale_bytecode"
    assert proposal.plan.target.name == f"{reader.app}/orders"


# -- saying honestly what was understood --------------------------------------------


async def test_a_known_alert_without_its_target_says_what_it_looked_for(reader):
    why = await reader.refusal(alert("ContainerUnhealthy", instance="docker-host-1:8080"))
    assert why.startswith(
        "Recognised `ContainerUnhealthy` as `docker_container_unhealthy` "
        "(pattern `docker-container-unhealthy`), but nothing in the alert names its `name`"
    )
    assert "label `name`, label `container`, label `container_name`" in why
    assert "No pattern recognises" not in why


async def test_a_known_name_that_misses_a_required_label_says_which(reader):
    why = await reader.refusal(alert("HighLogVolume", service="api", level="info"))
    assert why == (
        "`HighLogVolume` is known, but no pattern for it matched this alert "
        "(pattern `service-debug-log-volume`: its label `level` must match `(?i)debug`)."
    )


async def test_a_full_disk_without_its_log_folder_says_which_label_to_add(reader):
    why = await reader.refusal(alert("NodeFilesystemAlmostOutOfSpace", mountpoint="/"))
    assert why.startswith("Recognised `NodeFilesystemAlmostOutOfSpace` as `disk_filling_with_logs`")
    assert why.endswith("nothing in the alert names its `log_dir` (looked in label `log_dir`).")


async def test_a_scrapers_own_pod_label_is_not_the_workload(reader):
    # kube-state-metrics alerts carry the pod of kube-state-metrics itself.
    labels = {
        "namespace": "shop",
        "deployment": "checkout",
        "pod": "kube-state-metrics-6d4f7b8c9d-q2w8z",
        "job": "kube-state-metrics",
    }
    proposal = await reader.propose(alert("KubeDeploymentReplicasMismatch", **labels))
    assert proposal.plan.target.name == "deployment:shop/checkout"
    assert proposal.plan.playbook_id == "k8s-restart-deployment"


async def test_an_alert_about_missing_data_is_left_to_a_person(reader):
    text = "Container web-1 unhealthy: no data"
    why = await reader.refusal(alert("DatasourceNoData", text, rulename="web-1 unhealthy"))
    assert why.startswith("Recognised `DatasourceNoData` as `alert_rule_without_data`")
    assert why.endswith("but no playbook treats it.")


async def test_no_pattern_recognises_is_said_only_when_true(reader):
    assert await reader.refusal(alert("KafkaConsumerLag")) == (
        "No pattern recognises `KafkaConsumerLag`."
    )


async def test_a_target_outside_the_allowlist_is_refused_and_named(reader):
    why = await reader.refusal(alert("ContainerUnhealthy", name="db-1"))
    assert why == (
        "Refused, nothing was touched: "
        "docker target 'container:db-1' is not in the docker allowlist"
    )


async def test_a_later_reading_can_find_the_target_an_earlier_one_could_not(reader):
    # Its name is a known SQLite alert (no path in its labels); its text names the file.
    text = f"sqlite3.OperationalError: database is locked ({reader.db})"
    proposal = await reader.propose(alert("SQLiteDatabaseLocked", text, db="orders"))
    assert proposal.plan.target.name == str(reader.db)


# -- a person's own words ----------------------------------------------------------


async def test_a_persons_words_name_a_database_and_its_trouble(reader):
    proposal = await reader.propose(said(f"db at {reader.db} is locked again"))
    assert proposal.diagnosis.problem == "sqlite_database_locked"
    assert proposal.plan.target.name == str(reader.db)


async def test_a_persons_words_name_a_container(reader):
    proposal = await reader.propose(said("web-1 container unhealthy, can someone restart?"))
    assert (proposal.diagnosis.problem, proposal.plan.target.name) == (
        "docker_container_unhealthy",
        "container:web-1",
    )


async def test_what_a_person_says_always_needs_an_approval(reader):
    # service-log-level-info is tier 1: from an alert it would heal at once.
    from_alert = await reader.propose(alert("LogLevelDebug", service="api"))
    assert (from_alert.plan.tier, from_alert.plan.required_approvals) == (1, 0)
    from_person = await reader.propose(said("api is logging at debug level again"))
    assert from_person.plan.playbook_id == from_alert.plan.playbook_id
    assert (from_person.plan.tier, from_person.plan.required_approvals) == (2, 1)


async def test_the_allowlist_picks_the_thing_a_person_names(reader):
    proposal = await reader.propose(said("web is fine, but the api is down since 3am"))
    assert proposal.plan.target.name == "api"


async def test_a_person_naming_nothing_allowlisted_gets_no_plan(reader):
    why = await reader.refusal(said("db at /etc/passwd is locked"))
    assert "sqlite" in why and "/etc/passwd" in why


@pytest.mark.parametrize(
    "words",
    [
        "good morning all, quiet night",
        "deployed web v1.4.2 to prod",
        "is orders.db locked?",
        "why is web-1 unhealthy",
        "web-1 container isn't unhealthy anymore",
        "fixed: orders.db lock cleared, back to normal",
        "web-1 will be unhealthy during the deploy at 14:00",
    ],
)
def test_chatter_questions_plans_and_all_clears_are_no_report(words):
    event = {"type": "message", "user": "U0ONCALL", "text": words, "ts": "1765000000.000200"}
    assert parse_slack_message(event, channel="C0ALERTS", received_at=NOW) is None


async def test_a_bare_file_name_is_the_one_file_the_allowlist_names(reader):
    proposal = await reader.propose(said("heads up: orders.db-wal is 4.1G and still growing"))
    assert proposal.diagnosis.problem == "sqlite_wal_too_large"
    assert proposal.plan.target.name == str(reader.db)
    why = await reader.refusal(said("heads up: billing.db-wal is 4.1G and still growing"))
    assert "'billing.db' refused: no allowlisted folder holds that file" in why


async def test_a_rule_titled_in_words_is_read_from_its_title(reader):
    titled = alert("SQLite WAL file too large", f"{reader.db}: 2.3 GiB", db_path=str(reader.db))
    proposal = await reader.propose(titled)
    assert proposal.diagnosis.pattern_id == "sqlite-wal-too-large-text"

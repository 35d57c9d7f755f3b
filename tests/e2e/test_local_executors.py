"""The built-in files and service playbooks through the whole bot: a webhook
alert, the real executors on real files and a real local HTTP service, the
story in Slack, and the result on disk and on the wire."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from engine.executors.service import ServiceConfig
from engine.models import IncidentState

S = IncidentState


def alert(name: str, **labels: str) -> str:
    return json.dumps({"alerts": [{"name": name, "severity": "warning", "labels": labels}]})


@dataclass
class Api:
    """A service with a log-level admin endpoint that can be made to fall ill."""

    level: str = "debug"
    ill_below_debug: bool = False
    url: str = ""

    async def healthz(self, request: web.Request) -> web.Response:
        ill = self.ill_below_debug and self.level != "debug"
        return web.Response(status=500 if ill else 200, text="ill" if ill else "ok")

    async def get_level(self, request: web.Request) -> web.Response:
        return web.json_response({"level": self.level})

    async def put_level(self, request: web.Request) -> web.Response:
        self.level = (await request.json())["level"]
        return web.json_response({"level": self.level})


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    service = Api()
    app = web.Application()
    app.router.add_get("/healthz", service.healthz)
    app.router.add_get("/admin/log-level", service.get_level)
    app.router.add_put("/admin/log-level", service.put_level)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    service.url = f"http://{host}:{port}"
    yield service
    await runner.cleanup()


def service_settings(api: Api, app_dir: Path) -> dict[str, object]:
    return {
        "targets": {"sqlite": [str(app_dir / "*.db")], "service": ["api"]},
        "services": {
            "api": ServiceConfig(
                health_url=f"{api.url}/healthz", admin_url=f"{api.url}/admin/log-level"
            )
        },
    }


async def test_stale_bytecode_is_cleared_into_the_quarantine(make_harness, tmp_path):
    app = tmp_path / "srv" / "shop"
    (app / "__pycache__").mkdir(parents=True)
    stale = app / "__pycache__" / "cart.cpython-311.pyc"
    stale.write_bytes(b"\x00stale bytecode")
    (app / "cart.py").write_text("TOTAL = 1\n")
    h = await make_harness(targets={"files": [str(tmp_path / "srv")]})

    status, _ = await h.post("generic", alert("StaleBytecode", app_dir=str(app)))

    assert status == 200
    incident = await h.finished(await h.card())
    assert incident.state is S.RESOLVED
    assert not (app / "__pycache__").exists() and (app / "cart.py").is_file()
    kept = list((h.grace.settings.snapshots / "quarantine").rglob(stale.name))
    assert len(kept) == 1 and kept[0].read_bytes() == b"\x00stale bytecode"


async def test_a_target_outside_the_files_allowlist_is_refused(make_harness, tmp_path):
    app = tmp_path / "elsewhere"
    (app / "__pycache__").mkdir(parents=True)
    h = await make_harness(targets={"files": [str(tmp_path / "srv")]})

    await h.post("generic", alert("StaleBytecode", app_dir=str(app)))

    card = await h.card()
    await h.slack.wait_for(lambda: any("Needs a human" in t for t in h.thread(card)))
    assert "not" in h.thread(card)[-1] and (app / "__pycache__").is_dir()


async def test_a_debug_log_level_is_set_back_to_info(make_harness, tmp_path, api):
    h = await make_harness(**service_settings(api, tmp_path / "app"))

    await h.post("generic", alert("LogLevelDebug", service="api"))

    incident = await h.finished(await h.card())
    assert incident.state is S.RESOLVED
    assert api.level == "info"
    assert any("Verification passed" in t for t in h.thread(await h.card()))


async def test_a_change_that_makes_the_service_ill_is_rolled_back(make_harness, tmp_path, api):
    api.ill_below_debug = True
    h = await make_harness(**service_settings(api, tmp_path / "app"))

    await h.post("generic", alert("LogLevelDebug", service="api"))

    # The playbook gives the service 10 s to recover before it judges.
    incident = await h.finished(await h.card(), within_s=30)
    assert incident.state is S.ROLLED_BACK
    assert api.level == "debug"
    thread = h.thread(await h.card())
    assert any("Verification FAILED" in t for t in thread)
    assert any("Rolled back" in t for t in thread)

"""The auditors' dashboard (``medswarm audit serve``) over a real run, in HTTP and in headless
Chromium.

One module-wide federation: the demo's four Fed-Heart-Disease hospitals in two clusters, three
rounds kept by the Consortium on the in-process chain. The dashboard serves its run directory;
what the pages show is compared with the run's ``summary.json``, the model file's SHA-256 and
the audit's JSON. The browser is Debian's chromium and chromedriver, driven by selenium
(``make setup`` installs them; README.md, "Browser tests").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import trio

from incentive.audit_serve_cli import audit_loader
from incentive.audit_server import AuditServer
from incentive.consortium_audit import audit_events
from incentive.events import EventLog
from medswarm.cli import build_parser, main
from node.config import load_config, with_overrides
from node.data import resolve_data_dir
from testnet.local import LocalRun, run_local_federation

pytestmark = pytest.mark.integration

DEMO = Path(__file__).parents[2] / "testnet" / "demo.toml"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SECONDS = 20.0  # bound on every wait of these tests


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    torch.set_num_threads(1)
    config = with_overrides(load_config(DEMO), rounds=3, update_timeout=10.0)
    local = LocalRun(
        config=config,
        nodes=4,
        data_dir=resolve_data_dir(None, os.environ),
        out_dir=out,
        clusters=(0, 0, 1, 1),
    )
    trio.run(run_local_federation, local)
    return out


@pytest.fixture(scope="module")
def url(run_dir: Path) -> Iterator[str]:
    """The dashboard of ``run_dir``, served from a thread until the module's tests are done."""
    args = build_parser().parse_args(
        ["audit", "serve", "--run-dir", str(run_dir), "--bind", "127.0.0.1:0", "--refresh", "0"]
    )
    server = AuditServer(audit_loader(args), "127.0.0.1", 0, refresh_seconds=0)
    started = threading.Event()
    stop: dict[str, Any] = {}

    async def serve() -> None:
        with trio.CancelScope() as scope:
            stop["scope"], stop["token"] = scope, trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve)
                started.set()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    assert started.wait(SECONDS), "the dashboard did not start"
    yield server.url
    trio.from_thread.run_sync(stop["scope"].cancel, trio_token=stop["token"])
    thread.join(SECONDS)


def fetch(url: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=SECONDS) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def test_the_json_is_the_audit_of_the_runs_events(run_dir: Path, url: str) -> None:
    events = EventLog.read_jsonl(run_dir / "chain" / "events.jsonl").records()
    expected = json.loads(json.dumps(audit_events(events).as_dict()))

    status, body, headers = fetch(f"{url}/audit.json")
    health = json.loads(fetch(f"{url}/health")[1])

    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == expected
    assert health == {"status": "ok", "rounds": 3, "ok": True, "last_error": None}


def test_pages_that_do_not_exist_say_what_does(url: str) -> None:
    cases = {
        "/round/99": (404, "no round 99 was recorded"),
        "/model/" + "ab" * 32: (404, "no round, aggregate or update of this federation"),
        "/model?hash=%3Cscript%3E": (400, "&#x27;&lt;script&gt;&#x27; is not a SHA-256 hash"),
        "/hospital/0x" + "00" * 20: (404, "no member has the account"),
        "/nothing": (404, "try /, /round/N, /model/HASH"),
    }
    for path, (code, text) in cases.items():
        status, body, headers = fetch(url + path)
        assert (status, text in body) == (code, True), path
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_the_cli_serves_until_its_duration_ends(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["audit", "serve", "--run-dir", str(run_dir), "--bind", "127.0.0.1:0"]
    code = main([*argv, "--duration", "0.2"])

    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("audit dashboard on http://127.0.0.1:")
    assert f"(3 rounds, every check passed) from run directory {run_dir}" in out


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail(
            "no chromium/chromedriver on the PATH: `make setup` installs Debian's chromium "
            "and chromium-driver (README.md, 'Browser tests')"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1500")
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def after_click(driver: Any, element_id: str) -> Any:
    """The element ``element_id`` of the page a click navigates to, once it is there (the
    click returns before the next page is loaded)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    located = expected_conditions.presence_of_element_located(("id", element_id))
    return WebDriverWait(driver, SECONDS).until(located)


def cells(driver: Any, table: str) -> list[list[str]]:
    """The text of each body row's cells of the tables matching ``table`` (headers left out)."""
    rows = driver.find_elements("css selector", f"{table} tr")
    texts = [[c.text for c in row.find_elements("tag name", "td")] for row in rows]
    return [row for row in texts if row]


def test_a_browser_shows_the_runs_numbers_and_traces_the_final_model(
    run_dir: Path, url: str, browser: Any, tmp_path: Path
) -> None:
    run = summary(run_dir)
    model_hash = hashlib.sha256((run_dir / "model-final.bin").read_bytes()).hexdigest()
    console: list[dict[str, Any]] = []

    browser.get(url + "/")
    console += browser.get_log("browser")
    browser.save_screenshot(str(tmp_path / "audit-dashboard.png"))
    verdict = browser.find_element("id", "verdict").text
    hospitals = {row[0]: row for row in cells(browser, "#hospitals")}
    rounds = cells(browser, "#rounds")
    browser.find_element("link text", model_hash).click()
    lineage_hash = after_click(browser, "global-hash").text
    console += browser.get_log("browser")
    browser.save_screenshot(str(tmp_path / "audit-lineage.png"))
    updated_by = {row[0] for row in cells(browser, "table.updates")}
    browser.get(url + "/")
    browser.find_element("name", "hash").send_keys(model_hash.upper())
    browser.find_element("css selector", "nav button").click()
    traced = after_click(browser, "global-hash").text
    console += browser.get_log("browser")

    assert verdict == "every check passed"
    assert set(hospitals) == {h["name"] for h in run["hospitals"]}
    for h in run["hospitals"]:
        row = hospitals[h["name"]]
        assert row[1] == h["address"]
        assert int(row[4]) == h["contribution"]  # contribution
        assert int(row[6]) == h["reward_wei"]  # credited (wei)
    assert [int(r[0]) for r in rounds] == [3, 2, 1]
    assert rounds[0][1] == run["final_global_hash"] == model_hash
    assert lineage_hash == traced == model_hash
    assert updated_by == {h["name"] for h in run["hospitals"]}
    assert (tmp_path / "audit-dashboard.png").stat().st_size > 10_000
    assert [e for e in console if e["level"] in ("SEVERE", "WARNING")] == []

"""A real Prometheus server (Debian's ``prometheus`` package) scraping our proxy (tests).

Started on a free 127.0.0.1 port with a temporary configuration made from the shipped
``configuration/prometheus/scrape.yml`` (its job, with the test's target and a 1 s
interval) and a temporary data folder; stopped with SIGTERM. Nothing listens elsewhere and
nothing is fetched from anywhere but the target.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support.pipeline import ROOT, free_port
from tests.support.waiting import wait_until

SHIPPED = ROOT / "configuration" / "prometheus" / "scrape.yml"
INSTALL = "apt-get install -y --no-install-recommends prometheus (what .ci/run does)"


def binary(name: str = "prometheus") -> str:
    """The path of a Prometheus program; the test fails (never skips) without it."""
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else "")
    if not found:
        pytest.fail(f"{name} is not installed: {INSTALL}")
    return found


def scrape_config(target: str, metrics_path: str = "/metrics") -> dict[str, Any]:
    """The shipped configuration, pointed at ``target`` (host:port), scraping every second."""
    config = yaml.safe_load(SHIPPED.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    job = config["scrape_configs"][0]
    job.update(scrape_interval="1s", scrape_timeout="1s", metrics_path=metrics_path)
    job["static_configs"] = [{"targets": [target], "labels": {"site": "test"}}]
    return dict(config)


class PrometheusServer:
    """``with PrometheusServer(folder, "127.0.0.1:1234") as prom: prom.query("up")``"""

    def __init__(self, folder: Path, target: str, metrics_path: str = "/metrics") -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = folder / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(scrape_config(target, metrics_path)))
        self.log_path = folder / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        (self.folder / "data").mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    binary(),
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        if not wait_until(self._ready, 30, step=0.2):
            self.__exit__()
            pytest.fail(f"Prometheus did not get ready:\n{self.log()}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            pytest.fail(f"Prometheus exited with {self._process.returncode}:\n{self.log()}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _api(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        document = response.json()
        assert document["status"] == "success", document
        return document["data"]

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (``/api/v1/targets``)."""
        return list(self._api("targets", state="active")["activeTargets"])

    def wait_until_up(self, timeout: float = 20) -> dict[str, Any]:
        """The target, once its health is "up" (fails with the last error otherwise)."""

        def up() -> dict[str, Any] | None:
            found = self.targets()
            return found[0] if found and found[0]["health"] == "up" else None

        target = wait_until(up, timeout, step=0.25)
        if target is None:
            pytest.fail(f"the target never came up: {self.targets()}\n{self.log()}")
        return target

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's vector (``/api/v1/query``)."""
        params = {"query": promql} if at is None else {"query": promql, "time": at}
        data = self._api("query", **params)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def value(self, promql: str) -> float | None:
        """The single value of a query, or None while it has none."""
        result = self.query(promql)
        if len(result) != 1:
            return None
        return float(result[0]["value"][1])

    def wait_for_value(self, promql: str, timeout: float = 15) -> float:
        """The single value of a query, once it has one (0 included)."""

        def answered() -> tuple[float] | None:
            value = self.value(promql)
            return None if value is None else (value,)

        found = wait_until(answered, timeout, step=0.25)
        if found is None:
            pytest.fail(f"no value for {promql} after {timeout} s:\n{self.log()}")
        return found[0]


def check_config(path: Path) -> str:
    """``promtool check config`` on a file: its output (the test fails if it refuses)."""
    started = time.monotonic()
    done = subprocess.run(
        [binary("promtool"), "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, (done.stdout, done.stderr, time.monotonic() - started)
    return done.stdout + done.stderr

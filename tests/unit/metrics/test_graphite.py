"""The Graphite provider against a real Graphite on loopback: Debian's graphite-carbon (carbon-cache,
receiving the plaintext protocol, writing whisper files) and graphite-web (the render API, reading the
whisper files and carbon's cache), each started here with its own configuration in a temporary
directory. `make tools` installs both; without them the fixture fails and says so."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from step.errors import MetricError, NoValuesFound
from step.metrics.measure import measure
from step.metrics.provider import build_provider, provider_for
from step.spec.model import Analysis, Canary, Metric, MetricTemplate, TemplateRef

CARBON = "/usr/bin/carbon-cache"
SYSTEM_PYTHON = "/usr/bin/python3"  # graphite-web is Debian's, installed for the system Python
STARTUP_SECONDS = 30.0

SERVE = """
import sys, wsgiref.simple_server
from graphite.wsgi import application
class Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args): pass
server = wsgiref.simple_server.make_server("127.0.0.1", int(sys.argv[1]), application, handler_class=Quiet)
server.serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, ready: object, *, deadline: float, log: Path | None = None) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.05)
    tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what} not ready within {deadline:g}s\n{tail}")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@dataclass
class Graphite:
    url: str
    line_port: int

    def send(self, *lines: str) -> None:
        with socket.create_connection(("127.0.0.1", self.line_port)) as conn:
            conn.sendall(("\n".join(lines) + "\n").encode())

    def render(self, query: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}/render?{query}&format=json", timeout=5) as answer:
            return bytes(answer.read())


@pytest.fixture(scope="module")
def real_graphite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graphite]:
    if not (os.path.exists(CARBON) and os.path.exists("/usr/lib/python3/dist-packages/graphite/wsgi.py")):
        pytest.fail("graphite-carbon and graphite-web are not installed: run `make tools` (Debian packages)")
    root = tmp_path_factory.mktemp("graphite")
    conf, storage = root / "conf", root / "storage"
    for d in (conf, storage / "whisper", storage / "log", storage / "pid", storage / "lists"):
        d.mkdir(parents=True)
    line, pickle, query, web = (_free_port() for _ in range(4))
    (conf / "carbon.conf").write_text(
        "[cache]\n"
        f"STORAGE_DIR = {storage}\nLOCAL_DATA_DIR = {storage}/whisper\nWHITELISTS_DIR = {storage}/lists\n"
        f"CONF_DIR = {conf}\nLOG_DIR = {storage}/log\nPID_DIR = {storage}/pid\nENABLE_LOGROTATION = False\n"
        "USER =\nMAX_CACHE_SIZE = inf\nMAX_UPDATES_PER_SECOND = 10000\nMAX_CREATES_PER_MINUTE = inf\n"
        f"LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {line}\nENABLE_UDP_LISTENER = False\n"
        f"PICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {pickle}\n"
        f"CACHE_QUERY_INTERFACE = 127.0.0.1\nCACHE_QUERY_PORT = {query}\n"
    )
    (conf / "storage-schemas.conf").write_text("[default]\npattern = .*\nretentions = 1s:1h\n")
    (conf / "storage-aggregation.conf").write_text(
        "[default]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n"
    )
    (root / "canary_graphite_settings.py").write_text(
        f'SECRET_KEY = "canary-step-test"\nGRAPHITE_ROOT = "/usr/share/graphite-web"\nCONF_DIR = "{conf}"\n'
        f'STORAGE_DIR = "{storage}"\nLOG_DIR = "{storage}/log"\nINDEX_FILE = "{storage}/index"\n'
        f'WHISPER_DIR = "{storage}/whisper"\nCARBONLINK_HOSTS = ["127.0.0.1:{query}"]\n'
        "LOG_ROTATION = False\nDEFAULT_XFILES_FACTOR = 0\nFUNCTION_PLUGINS = []\nTAGDB = ''\n"
        f'DATABASES = {{"default": {{"NAME": "{storage}/graphite.db",'
        ' "ENGINE": "django.db.backends.sqlite3"}}\n'
    )
    (root / "serve.py").write_text(SERVE)
    carbon_log, web_log = root / "carbon.out", root / "web.out"
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "DJANGO_SETTINGS_MODULE": "graphite.settings",
        "GRAPHITE_SETTINGS_MODULE": "canary_graphite_settings",
    }
    env.pop("VIRTUAL_ENV", None)
    with carbon_log.open("w") as out_c, web_log.open("w") as out_w:
        carbon = subprocess.Popen(
            [
                CARBON,
                f"--config={conf}/carbon.conf",
                "--nodaemon",
                f"--pidfile={storage}/pid/carbon.pid",
                "start",
            ],
            stdout=out_c,
            stderr=subprocess.STDOUT,
            env=env,
        )
        webapp = subprocess.Popen(
            [SYSTEM_PYTHON, str(root / "serve.py"), str(web)],
            stdout=out_w,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
        )
    try:
        _wait("carbon-cache", lambda: _listening(line), deadline=STARTUP_SECONDS, log=carbon_log)
        _wait("graphite-web", lambda: _listening(web), deadline=STARTUP_SECONDS, log=web_log)
        yield Graphite(url=f"http://127.0.0.1:{web}", line_port=line)
    finally:
        for process in (webapp, carbon):
            process.terminate()
        for process in (webapp, carbon):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _template(url: str, query: str = "") -> MetricTemplate:
    return MetricTemplate(name="errors", namespace="test", provider_type="graphite", query=query, address=url)


def _feed(server: Graphite, series: dict[str, list[float]]) -> None:
    """Send each series' points, one a second ending now, and wait until graphite-web serves the last."""
    now = int(time.time())
    server.send(
        *(
            f"{name} {v} {now - len(values) + 1 + i}"
            for name, values in series.items()
            for i, v in enumerate(values)
        )
    )
    for name, values in series.items():
        _wait(
            f"{name} in graphite-web",
            lambda name=name, values=values: (
                f"{values[-1]}".encode() in server.render(f"target={name}&from=-2min")
            ),
            deadline=10,
        )


def test_the_last_value_of_a_real_series(real_graphite: Graphite) -> None:
    _feed(real_graphite, {"app.podinfo-00002.errors": [1.0, 2.0, 3.0, 4.5]})
    provider = build_provider(_template(real_graphite.url), {}, timeout=5.0, wall=time.time)
    assert provider.query("target=app.podinfo-00002.errors\n  &from=-2min") == 4.5
    assert provider.is_online()


def test_a_template_renders_the_revision_and_a_function_answers(real_graphite: Graphite) -> None:
    _feed(real_graphite, {"app.podinfo-00003.requests": [10.0, 10.0], "app.podinfo-00003.errors": [1.0, 3.0]})
    query = "target=asPercent(app.{{ route }}.errors, app.{{ route }}.requests)&from=-{{ variables.window }}"
    tpl = _template(real_graphite.url, query)
    canary = Canary(name="podinfo", namespace="test", target_name="podinfo", analysis=Analysis())
    metric = Metric(
        name="error-percentage",
        threshold_max=5,
        template_ref=TemplateRef(name="errors"),
        template_variables={"window": "2min"},
    )
    provider = provider_for(tpl, secret={})
    reading = measure(
        canary,
        metric,
        canary_revision="podinfo-00003",
        templates={("test", "errors"): tpl},
        metrics_server=provider,
        template_providers={("test", "errors"): provider},
    )
    assert reading.value == 30.0, reading
    assert "app.podinfo-00003.errors" in reading.query


def test_no_series_is_no_data_and_a_bad_query_is_a_provider_error(real_graphite: Graphite) -> None:
    provider = build_provider(_template(real_graphite.url), {}, timeout=5.0, wall=time.time)
    with pytest.raises(NoValuesFound):
        provider.query("target=app.never-sent.errors&from=-1min")
    with pytest.raises(MetricError) as caught:
        provider.query("target=noSuchFunction(app.x)&from=-1min")
    assert not isinstance(caught.value, NoValuesFound)
    down = build_provider(_template(f"http://127.0.0.1:{_free_port()}"), {}, timeout=1.0, wall=time.time)
    with pytest.raises(MetricError, match="is unreachable"):
        down.query("target=a")
    assert not down.is_online()

"""``redis+sentinel://``: the primary found through a real Sentinel this test starts."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask

from flask_quota import ConfigurationError, Quota, StorageError
from flask_quota.storage import RedisStorage, storage_from_uri
from tests.conftest import _free_port, _unavailable

SERVICE = "quota-primary"


def _wait(client: redis.Redis, ready: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            if ready == "ping":
                client.ping()
            elif client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE):
                return
            else:
                raise redis.ConnectionError("no primary yet")
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                _unavailable(f"redis {ready} did not start")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def sentinel_uri() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not installed")
    assert binary is not None
    workdir = Path(tempfile.mkdtemp(prefix="quota-sentinel-"))
    primary_port, sentinel_port = _free_port(), _free_port()
    primary = subprocess.Popen(
        [
            binary,
            "--port",
            str(primary_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = workdir / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 1\n"
    )
    sentinel = subprocess.Popen(
        [binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(redis.Redis(port=primary_port), "ping", primary)
        _wait(redis.Redis(port=sentinel_port), "sentinel", sentinel)
        yield f"redis+sentinel://127.0.0.1:{sentinel_port}/{SERVICE}/0"
    finally:
        for process in (sentinel, primary):
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def test_sentinel_uri_finds_the_primary(sentinel_uri: str) -> None:
    storage = storage_from_uri(sentinel_uri)
    assert isinstance(storage, RedisStorage)
    assert storage.client.ping()
    assert storage.client.connection_pool.service_name == SERVICE


def test_limits_are_enforced_through_sentinel(sentinel_uri: str, key_prefix: str) -> None:
    app = Flask(__name__)
    app.config.update(QUOTA_STORAGE_URI=sentinel_uri, QUOTA_KEY_PREFIX=key_prefix)
    quota = Quota(app)

    @app.get("/")
    @quota.limit("2/minute")
    def index() -> str:
        return "ok"

    client = app.test_client()
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]


def test_a_database_the_primary_lacks_raises_storage_error(sentinel_uri: str) -> None:
    storage = storage_from_uri(sentinel_uri.rsplit("/", 1)[0] + "/99")
    assert isinstance(storage, RedisStorage)

    with pytest.raises(StorageError, match="^redis unavailable: DB index is out of range "):
        storage.now_us()
    storage.client.close()


@pytest.mark.parametrize(
    "uri",
    [
        "redis+sentinel://",
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1/primary",
        "redis+sentinel://127.0.0.1:26379/primary/zero",
        "redis+sentinel://127.0.0.1:26379/a/1/extra",
    ],
)
def test_malformed_sentinel_uri_fails_at_start_up(uri: str) -> None:
    with pytest.raises(ConfigurationError, match="QUOTA_STORAGE_URI"):
        storage_from_uri(uri)

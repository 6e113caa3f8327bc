"""Settings from config: validation at start-up, and the lookups operators rely on."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_quota import ConfigurationError, Quota


def make_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    return app


def test_quota_limits_bad_string_fails_at_init_naming_key_and_name() -> None:
    app = make_app(QUOTA_LIMITS={"search": "10/fortnight"})
    with pytest.raises(ConfigurationError, match=r"QUOTA_LIMITS\['search'\].*10/fortnight"):
        Quota(app)


def test_quota_plans_bad_string_fails_at_init() -> None:
    app = make_app(QUOTA_PLANS={"free": "lots"})
    with pytest.raises(ConfigurationError, match=r"QUOTA_PLANS\['free'\]"):
        Quota(app)


def test_quota_limits_replaces_a_derived_name_and_none_drops_it() -> None:
    app = make_app(QUOTA_LIMITS={"a:1/minute": "3/minute", "b:1/minute": None})
    quota = Quota(app)

    @app.get("/a")
    @quota.limit("1/minute")
    def a() -> str:
        return "a"

    @app.get("/b")
    @quota.limit("1/minute")
    def b() -> str:
        return "b"

    client = app.test_client()
    assert [client.get("/a").status_code for _ in range(4)] == [200, 200, 200, 429]
    first = client.get("/a")
    assert first.json is not None and first.json["policy"] == "a:1/minute"
    assert first.json["limit"] == 3
    responses = [client.get("/b") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert "X-RateLimit-Limit" not in responses[0].headers


def test_whitelist_string_from_the_environment_is_split_on_commas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLASK_QUOTA_WHITELIST", "user:1, 10.0.0.0/8 ,127.0.0.1")
    app = make_app()
    app.config.from_prefixed_env()
    quota = Quota(app, default_limits=["1/minute"])

    @app.get("/")
    def index() -> str:
        return "ok"

    client = app.test_client()
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 200]
    settings = app.extensions["quota.state"].settings
    assert settings.whitelist_identities == frozenset({"user:1"})
    assert [str(n) for n in settings.whitelist_networks] == ["10.0.0.0/8", "127.0.0.1/32"]
    assert quota is app.extensions["quota"]


@pytest.mark.parametrize(("value", "enabled"), [("0", False), ("1", True), ("false", False)])
def test_booleans_from_the_environment_as_flask_reads_them(
    monkeypatch: pytest.MonkeyPatch, value: str, enabled: bool
) -> None:
    # from_prefixed_env JSON-decodes values: "0" and "1" arrive as the ints 0 and 1.
    monkeypatch.setenv("FLASK_QUOTA_ENABLED", value)
    monkeypatch.setenv("FLASK_QUOTA_HEADERS_ENABLED", "0")
    app = make_app()
    app.config.from_prefixed_env()
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("1/minute")
    def index() -> str:
        return "ok"

    client = app.test_client()
    statuses = [client.get("/").status_code for _ in range(2)]
    assert statuses == ([200, 429] if enabled else [200, 200])
    settings = app.extensions["quota.state"].settings
    assert settings.headers_enabled is False


def test_other_integers_are_not_booleans() -> None:
    with pytest.raises(ConfigurationError, match="QUOTA_ENABLED 2"):
        Quota(make_app(QUOTA_ENABLED=2))


def test_a_numeric_key_prefix_from_the_environment_is_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLASK_QUOTA_KEY_PREFIX", "2024")
    app = make_app()
    app.config.from_prefixed_env()
    Quota(app)
    assert app.extensions["quota.state"].settings.key_prefix == "2024"


def test_two_parts_of_one_string_with_one_period_count_apart() -> None:
    app = make_app()
    quota = Quota(app, strategy="fixed_window")

    @app.get("/")
    @quota.limit("2/minute;5/minute")
    def index() -> str:
        return "ok"

    client = app.test_client()
    statuses = [client.get("/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    keys = app.extensions["quota.state"].storage.keys()
    assert len([k for k in keys if ":fw:60:" in k]) == 2


def test_a_limit_declared_after_the_first_request_still_applies() -> None:
    app = make_app()
    quota = Quota(app)

    def view() -> str:
        return "ok"

    app.add_url_rule("/", "index", view)
    client = app.test_client()
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 200]  # plan compiled

    quota.limit("1/minute")(view)

    assert [client.get("/").status_code for _ in range(2)] == [200, 429]

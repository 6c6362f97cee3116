"""Configuration layers and the instance folder's keys."""
from __future__ import annotations

import pytest

from billcore import create_app


def _app(tmp_path, monkeypatch, env=None, test_config=None, instance_config=None):
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    if instance_config is not None:
        (instance / "config.py").write_text(instance_config)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    config = {"INSTANCE_PATH": str(instance), "TESTING": True}
    config.update(test_config or {})
    return create_app(config)


def test_precedence(tmp_path, monkeypatch):
    instance_config = "BASE_URL = 'https://from-instance.example'\nLOG_LEVEL = 'WARNING'\nADMIN_PAGE_SIZE = 7\n"
    app = _app(tmp_path, monkeypatch, instance_config=instance_config)
    assert app.config["BASE_URL"] == "https://from-instance.example"
    assert app.config["ADMIN_PAGE_SIZE"] == 7
    assert app.config["CLIENT_PAGE_SIZE"] == 20  # default untouched

    app = _app(tmp_path, monkeypatch, instance_config=instance_config,
               env={"BILLCORE_BASE_URL": "https://from-env.example", "BILLCORE_LOG_LEVEL": "ERROR"})
    assert app.config["BASE_URL"] == "https://from-env.example"
    assert app.config["LOG_LEVEL"] == "ERROR"
    assert app.config["ADMIN_PAGE_SIZE"] == 7

    app = _app(tmp_path, monkeypatch, instance_config=instance_config,
               env={"BILLCORE_BASE_URL": "https://from-env.example/"},
               test_config={"BASE_URL": "https://from-test.example/"})
    assert app.config["BASE_URL"] == "https://from-test.example"  # trailing slash dropped


def test_instance_path_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BILLCORE_INSTANCE_PATH", str(tmp_path / "elsewhere"))
    app = create_app({"TESTING": True})
    assert app.instance_path == str(tmp_path / "elsewhere")
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'elsewhere' / 'billcore.sqlite'}"
    assert app.config["LOG_DIR"] == str(tmp_path / "elsewhere" / "var")


def test_database_and_log_dir_from_environment(tmp_path, monkeypatch):
    app = _app(tmp_path, monkeypatch, env={"BILLCORE_DATABASE_URL": "postgresql://u@h:5432/db",
                                           "BILLCORE_LOG_DIR": str(tmp_path / "logs")})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h:5432/db"
    assert app.config["LOG_DIR"] == str(tmp_path / "logs")


def test_keys_created_once_and_reused(tmp_path, monkeypatch):
    first = _app(tmp_path, monkeypatch)
    secret_file = tmp_path / "instance" / "secret_key"
    key_file = tmp_path / "instance" / "encryption.key"
    assert secret_file.is_file() and key_file.is_file()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    second = _app(tmp_path, monkeypatch)
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] != ""
    assert first.config["ENCRYPTION_KEY"] == second.config["ENCRYPTION_KEY"] != ""


def test_secret_key_from_environment_wins(tmp_path, monkeypatch):
    app = _app(tmp_path, monkeypatch, env={"BILLCORE_SECRET_KEY": "from-env"})
    assert app.config["SECRET_KEY"] == "from-env"


def test_secure_cookies_with_https_base_url(tmp_path, monkeypatch):
    assert _app(tmp_path, monkeypatch, test_config={"BASE_URL": "https://b.example"}).config["SESSION_COOKIE_SECURE"]
    assert not _app(tmp_path, monkeypatch, test_config={"BASE_URL": "http://b.example"}).config.get("SESSION_COOKIE_SECURE")


def test_an_empty_key_file_is_refused_not_used(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "encryption.key").write_text("\n")
    with pytest.raises(RuntimeError, match="encryption.key is empty"):
        create_app({"INSTANCE_PATH": str(instance), "TESTING": True})


def test_processes_starting_together_share_one_key(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    instance = tmp_path / "instance"
    instance.mkdir()
    with ProcessPoolExecutor(4) as pool:
        keys = list(pool.map(_start_and_read_key, [str(instance)] * 8))
    assert len(set(keys)) == 1 and keys[0]
    assert (instance / "secret_key").read_text().strip() == keys[0]
    assert not [p.name for p in instance.iterdir() if p.name.startswith(".")]


def _start_and_read_key(instance: str) -> str:
    return create_app({"INSTANCE_PATH": instance, "TESTING": True}).config["SECRET_KEY"]

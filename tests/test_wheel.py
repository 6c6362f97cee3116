"""A wheel built from setup.py, installed in a clean virtual environment, runs with its templates and
both in-tree payment modules (the packaging promise of docs/design.md §10)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
@pytest.mark.xdist_group("wheel")
def test_wheel_installs_and_runs(tmp_path, billcore_wheel):
    wheel = billcore_wheel
    venv = tmp_path / "venv"
    # The environment gets no pip of its own (its ensurepip takes seconds and is not what is tested): this
    # environment's pip installs the wheel and its dependencies into it from outside (``--python``).
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    # --no-compile: pip would otherwise compile every installed module (tests run with bytecode on, see
    # the Makefile); what the test imports is compiled as it is imported
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-compile",
          str(wheel)])

    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLCORE_")}
    env.update({"BILLCORE_INSTANCE_PATH": str(tmp_path / "instance"), "BILLCORE_DEV_MODULES": "true"})
    out = _run([str(venv / "bin" / "flask"), "--app", "billcore", "plugins", "--json"], cwd=tmp_path, env=env)
    rows = {row["key"]: row for row in json.loads(out.stdout)}
    assert rows["pmrobokassa"]["error"] is None and rows["pmtemplate"]["error"] is None
    assert rows["pmrobokassa"]["source"].startswith("entry point")
    # the console script runs the same commands, from the wheel's billcore wherever it is started
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "billcore").mkdir(parents=True)  # a folder named like the package (see billcore.cli.main)
    out = _run([str(venv / "bin" / "billcore"), "plugins", "--json"], cwd=elsewhere, env=env)
    assert {row["key"]: row["error"] for row in json.loads(out.stdout)}["pmtemplate"] is None

    script = (
        "from billcore import create_app\n"
        "app = create_app()\n"
        "print(app.jinja_loader.searchpath[0])\n"
        "resp = app.test_client().get('/login')\n"
        "print(resp.status_code, b'Log in' in resp.data)\n"
        "print(app.test_client().get('/static/billcore.css').status_code)\n"
    )
    _run([str(venv / "bin" / "flask"), "--app", "billcore", "init"], cwd=tmp_path, env=env)
    out = _run([str(venv / "bin" / "python"), "-c", script], cwd=tmp_path, env=env)
    templates, login, css = out.stdout.strip().splitlines()
    assert str(venv) in templates and "site-packages" in templates
    assert login == "200 True"
    assert css == "200"

"""``billcore module new``: the generated module is small, loads, lists, passes its tests, and packages."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from billcore.scaffold import (SKELETON_ROUTES, Names, ScaffoldError, generate, planned_routes, rename_text,
                               skeleton_dir, validate_name)
from billcore.testing.fixtures import make_app

MAX_MODULE_LINES = 200  # the promise of docs/plugins.md: a whole redirect gateway in at most this many lines
BILLCORE_SCRIPT = Path(sys.executable).with_name("billcore")  # the console script of this environment


def _env(**extra: str) -> dict[str, str]:
    """The environment of a child process: no BILLCORE_ setting leaks in, except the PostgreSQL URL of
    the tests (so a generated module's suite runs on PostgreSQL too when billcore's does)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLCORE_") or k == "BILLCORE_TEST_DATABASE_URL"}
    env.update(extra)
    return env


def module_lines(package: Path) -> dict[str, int]:
    """Physical lines of every ``.py`` file of the module's code (its ``tests`` left out), by file: blank
    lines, comments and docstrings all count."""
    return {str(path.relative_to(package)): len(path.read_text(encoding="utf-8").splitlines())
            for path in sorted(package.rglob("*.py")) if "tests" not in path.relative_to(package).parts}


@pytest.mark.parametrize("name", ["foo", "Pmfoo", "pm", "pm1foo", "pm-foo", "pmfoo bar", "pmtemplate",
                                  "pmrobokassa", "pmfoo.bar", "", "pmfoo\n"])
def test_bad_names_are_refused(name):
    with pytest.raises(ScaffoldError):
        validate_name(name, known={"pmrobokassa"})


def test_cli_explains_a_bad_name(app, tmp_path):
    result = app.test_cli_runner().invoke(args=["module", "new", "Stripe", "--dir", str(tmp_path)])
    assert result.exit_code != 0 and "invalid module name 'Stripe'" in result.output
    result = app.test_cli_runner().invoke(args=["module", "new", "pmtemplate", "--dir", str(tmp_path)])
    assert result.exit_code != 0 and "already exists" in result.output
    assert not list(tmp_path.glob("pm*"))


def test_renaming():
    names = Names.of("pmstripe_eu")
    assert names.short == "stripe_eu" and names.title == "Stripe Eu gateway" and names.camel == "StripeEu"
    text = ('KEY = "pmskeleton"\nRESULT = "/mancgi/skeletonresult"\nclass SkeletonAdapter: ...\n'
            'title="Skeleton gateway"\n# the skeleton and pmskeletons\n')
    assert rename_text(text, names) == ('KEY = "pmstripe_eu"\nRESULT = "/mancgi/stripe_euresult"\n'
                                        'class StripeEuAdapter: ...\ntitle="Stripe Eu gateway"\n'
                                        '# the skeleton and pmstripe_eus\n')


def test_the_generated_module_is_small_complete_and_renamed(tmp_path):
    name = "pmscafsmall"
    target = generate(name, tmp_path / "out")
    assert target == (tmp_path / "out" / name).resolve()
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "README.md", f"{name}/__init__.py", f"{name}/callbacks.py", f"{name}/forms.py", f"{name}/tests/__init__.py",
        f"{name}/tests/adapter.py", f"{name}/tests/conftest.py", f"{name}/tests/test_conformance.py",
        "pyproject.toml"]
    lines = module_lines(target / name)
    print(f"module code lines of a generated module: {lines}, {sum(lines.values())} in all")
    assert sum(lines.values()) <= MAX_MODULE_LINES, lines
    texts = {str(p.relative_to(target)): p.read_text(encoding="utf-8") for p in target.rglob("*") if p.is_file()}
    assert not [path for path, text in texts.items() if "skeleton" in text.lower()], "a name left unrenamed"
    code = "".join(texts[f"{name}/{file}"] for file in lines)
    assert code.count("TODO(gateway)") >= 8
    for promise in ('api_version="3.0"', "success_answer=OK", "gateway_callback(", "gateway_return(",
                    "hmac.compare_digest(", "parse_amount(", "set_paid(", "set_cancelled(", "raise Refuse(",
                    "return Answer(OK)", 'StartAction(GATEWAY_URL, method="POST"', "/mancgi/scafsmallresult"):
        assert promise in code, promise
    adapter = texts[f"{name}/tests/adapter.py"]
    assert "class ScafsmallAdapter(ConformanceAdapter)" in adapter and "def other_merchant_settings" in adapter
    assert "def prepare_payment" not in adapter and "def success_answer" not in adapter  # the suite's defaults
    assert f'[project.entry-points."billcore.paymethods"]\n{name} = "{name}"' in texts["pyproject.toml"]
    with pytest.raises(ScaffoldError, match="not empty"):
        generate(name, tmp_path / "out")  # never overwrites


def test_the_skeleton_in_the_source_tree_is_what_the_wheel_ships():
    """setup.py's package data takes every file of the skeleton (the wheel test generates from it)."""
    from setuptools import glob

    root = skeleton_dir().parent
    shipped = {Path(path) for pattern in ("skeleton/*.tmpl", "skeleton/**/*.py")
               for path in glob.glob(str(root / pattern), recursive=True)}
    present = {path for path in skeleton_dir().rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    assert present and present == shipped
    assert '"skeleton/*.tmpl", "skeleton/**/*.py"' in (root.parent / "setup.py").read_text(encoding="utf-8")


def test_generated_module_loads_beside_pmtemplate_and_serves_the_planned_routes(tmp_path, monkeypatch):
    name = "pmscafload"
    target = generate(name, tmp_path / "out")
    monkeypatch.syspath_prepend(str(target))
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", EXTRA_MODULES={name: name})
    registry = app.extensions["billcore.modules"]
    assert name in registry.modules and "pmtemplate" in registry.modules, registry.errors
    served = sorted(rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith(f"{name}."))
    assert served == sorted(planned_routes(Names.of(name))) == sorted(route.replace("skeleton", "scafload")
                                                                     for route in SKELETON_ROUTES)
    assert "/mancgi/tplresult" in {rule.rule for rule in app.url_map.iter_rules()}
    result = app.test_cli_runner().invoke(args=["plugins"])
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith(name + " "))
    assert "0.1.0  Scafload gateway  features: -" in line


def test_the_gateway_reaches_the_generated_callbacks_with_csrf_on(tmp_path, monkeypatch):
    """billcore exempts the notification and the returns from CSRF (they are made by gateway_callback and
    gateway_return); the module does nothing for it."""
    name = "pmscafcsrf"
    target = generate(name, tmp_path / "out")
    monkeypatch.syspath_prepend(str(target))
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", EXTRA_MODULES={name: name}, WTF_CSRF_ENABLED=True)
    with app.app_context():
        client = app.test_client()
        refused = client.post("/mancgi/scafcsrfresult", data={"order_id": "12345"})
        assert (refused.status_code, refused.get_data(as_text=True)) == (404, "unknown payment")
        assert client.post("/mancgi/scafcsrfsuccess", data={"order_id": "12345"}).status_code == 302
        assert client.post("/payments/1/cancel").status_code in (302, 400)  # any other POST still needs a token


@pytest.mark.slow
def test_the_generated_modules_tests_pass_against_the_source_tree(tmp_path):
    """As generated, the module passes billcore's conformance suite (its only tests), run by pytest in
    the generated folder the way the module's author runs it."""
    name = "pmscafrun"
    target = generate(name, tmp_path / "out")
    env = _env(PYTHONPATH=str(target), BILLCORE_EXTRA_MODULES=json.dumps({name: name}))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
                          cwd=target, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout


def test_the_console_script_works_beside_a_billcore_folder(tmp_path):
    """``billcore module new`` in a folder that holds a ``billcore/`` directory (where ``flask --app
    billcore`` would import that directory instead of the installed billcore) makes the module."""
    assert BILLCORE_SCRIPT.is_file(), "reinstall billcore (make install): its console script is missing"
    work = tmp_path / "work"
    (work / "billcore").mkdir(parents=True)
    (work / "billcore" / "notes.txt").write_text("not the billcore package\n")
    env = _env(BILLCORE_INSTANCE_PATH=str(tmp_path / "instance"))
    made = subprocess.run([str(BILLCORE_SCRIPT), "module", "new", "pmscafcwd"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"Created {work / 'pmscafcwd'}" in made.stdout
    assert (work / "pmscafcwd" / "pmscafcwd" / "callbacks.py").is_file()
    listed = subprocess.run([str(BILLCORE_SCRIPT), "plugins", "--json"], cwd=work, env=env, capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "pmtemplate" in {row["key"] for row in json.loads(listed.stdout)}


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory, billcore_wheel) -> Path:
    """billcore's own wheel (built from setup.py), unpacked into a folder that can go on PYTHONPATH."""
    import zipfile

    site = tmp_path_factory.mktemp("wheel-site")
    with zipfile.ZipFile(billcore_wheel) as wheel:
        wheel.extractall(site)
    return site


@pytest.mark.slow
@pytest.mark.xdist_group("wheel")
def test_scaffold_from_the_wheel_and_its_tests_pass(tmp_path, wheel_site):
    """``module new`` run from an installed (wheel) billcore writes the skeleton it ships, and the
    generated module's tests (the conformance suite) pass against that billcore."""
    name = "pmscaftest"
    env = _env(PYTHONPATH=str(wheel_site), BILLCORE_INSTANCE_PATH=str(tmp_path / "instance"))
    made = subprocess.run([sys.executable, "-c", "from billcore.cli import main; main()", "module", "new", name,
                           "--dir", str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    target = tmp_path / "out" / name
    assert f"Created {target}" in made.stdout
    assert sum(module_lines(target / name).values()) <= MAX_MODULE_LINES
    assert (target / name / "tests" / "test_conformance.py").is_file()

    env = _env(PYTHONPATH=os.pathsep.join([str(target), str(wheel_site)]),
               BILLCORE_EXTRA_MODULES=json.dumps({name: name}))
    check = subprocess.run([sys.executable, "-c", "import billcore.testing, billcore.scaffold; "
                            "print(billcore.testing.__file__); print(billcore.scaffold.SKELETON_DIR)"],
                           cwd=target, env=env, capture_output=True, text=True, timeout=60)
    assert check.stdout.count(str(wheel_site)) == 2, check.stdout + check.stderr  # the wheel's, not the tree's
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
                          cwd=target, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
    assert "TestConformance" in subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider"], cwd=target, env=env,
        capture_output=True, text=True, timeout=120).stdout


@pytest.mark.slow
def test_generated_distribution_installs_and_loads_through_its_entry_point(tmp_path):
    """Built and installed by pip (a wheel, into a private folder): the entry point finds the module and
    its tests travel with it. Needs pip to fetch setuptools for the isolated build."""
    name = "pmscafwheel"
    target = generate(name, tmp_path / "src")
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target",
                          str(site), str(target)], capture_output=True, text=True, timeout=600, env=_env())
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    assert (site / name / "callbacks.py").is_file() and (site / name / "tests" / "adapter.py").is_file()
    env = _env(PYTHONPATH=str(site), BILLCORE_INSTANCE_PATH=str(tmp_path / "instance"),
               BILLCORE_DEV_MODULES="true")
    proc = subprocess.run([str(BILLCORE_SCRIPT), "plugins"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{name}  0.1.0  Scafwheel gateway" in proc.stdout and f"(entry point {name})" in proc.stdout


@pytest.mark.parametrize("name, clash", [("pmrk", "/mancgi/rkresult"), ("pmtpl", "/mancgi/tplresult")])
def test_cli_refuses_a_name_whose_routes_are_taken(app, tmp_path, name, clash):
    out = tmp_path / "out"
    result = app.test_cli_runner().invoke(args=["module", "new", name, "--dir", str(out)])
    assert result.exit_code != 0, result.output
    assert "collide" in result.output and clash in result.output
    assert not out.exists() or not list(out.iterdir())  # nothing written


def test_a_taken_blueprint_name_is_refused(app, tmp_path):
    from flask import Blueprint

    app.blueprints["pmnewbp"] = Blueprint("pmnewbp", __name__)  # as if something already used the name
    out = tmp_path / "out"
    with pytest.raises(ScaffoldError, match="blueprint name 'pmnewbp'"):
        generate("pmnewbp", out, app=app)
    assert not out.exists()
    generate("pmfreebp", out, app=app)  # a free name still works
    assert (out / "pmfreebp" / "pyproject.toml").is_file()

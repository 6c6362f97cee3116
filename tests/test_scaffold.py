"""``flask --app billcore module new``: the generated module loads, lists, passes its tests, and packages."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from billcore.scaffold import TEMPLATE_ROUTES, Names, ScaffoldError, generate, planned_routes, rename_text, validate_name
from billcore.testing.fixtures import make_app


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLCORE_")}
    env.update(extra)
    return env


@pytest.mark.parametrize("name", ["foo", "Pmfoo", "pm", "pm1foo", "pm-foo", "pmfoo bar", "pmtemplate",
                                  "pmrobokassa", "pmfoo.bar", ""])
def test_bad_names_are_refused(name):
    with pytest.raises(ScaffoldError):
        validate_name(name, known={"pmrobokassa"})


def test_cli_explains_a_bad_name(app, tmp_path):
    result = app.test_cli_runner().invoke(args=["module", "new", "Stripe", "--dir", str(tmp_path)])
    assert result.exit_code != 0 and "invalid module name 'Stripe'" in result.output
    result = app.test_cli_runner().invoke(args=["module", "new", "pmrobokassa", "--dir", str(tmp_path)])
    assert result.exit_code != 0 and "already exists" in result.output
    assert not list(tmp_path.glob("pm*"))


def test_renaming():
    names = Names.of("pmstripe_eu")
    assert names.short == "stripe_eu" and names.title == "Stripe Eu gateway" and names.camel == "StripeEu"
    text = 'KEY = "pmtemplate"\n@bp.route("/mancgi/tplresult")\nfile_logger(f"tpl{kind}")\n"/fakegw/pay"\nhtml_tpl'
    assert rename_text(text, names) == ('KEY = "pmstripe_eu"\n@bp.route("/mancgi/stripe_euresult")\n'
                                        'file_logger(f"stripe_eu{kind}")\n"/fakegw/stripe_eu/pay"\nhtml_tpl')


def test_generated_module_loads_beside_pmtemplate(tmp_path, monkeypatch):
    name = "pmscafload"
    dist = tmp_path / "out"
    target = generate(name, dist)
    assert target == (dist / name).resolve()
    assert (target / name / "templates" / name / "fakegw.html").is_file()
    pyproject = (target / "pyproject.toml").read_text()
    assert f'[project.entry-points."billcore.paymethods"]\n{name} = "{name}"' in pyproject
    source = (target / name / "views.py").read_text()
    assert "/mancgi/scafloadresult" in source and "tpl" not in source.replace("template", "")
    with pytest.raises(ScaffoldError, match="not empty"):
        generate(name, dist)  # never overwrites

    monkeypatch.syspath_prepend(str(target))
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", EXTRA_MODULES={name: name})
    registry = app.extensions["billcore.modules"]
    assert name in registry.modules and "pmtemplate" in registry.modules, registry.errors
    rules = {r.rule: r.endpoint for r in app.url_map.iter_rules()}
    assert rules["/mancgi/scafloadresult"] == f"{name}.{'scafload'}result"
    assert rules["/fakegw/scafload/pay"] == f"{name}.fakegw_pay"
    assert rules["/mancgi/tplresult"] == "pmtemplate.tplresult"
    result = app.test_cli_runner().invoke(args=["plugins"])
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith(name + " "))
    assert "Scafload gateway" in line and "checkpay" in line
    assert app.test_cli_runner().invoke(args=[name, "ops"]).exit_code == 0


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
    """``module new`` run from an installed (wheel) billcore copies pmtemplate's packaged files, and the
    generated module's own tests and the conformance suite pass against that billcore."""
    name = "pmscaftest"
    env = _env(PYTHONPATH=str(wheel_site), BILLCORE_INSTANCE_PATH=str(tmp_path / "instance"))
    made = subprocess.run([sys.executable, "-m", "flask", "--app", "billcore", "module", "new", name,
                           "--dir", str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    target = tmp_path / "out" / name
    assert f"Created {target}" in made.stdout
    assert (target / name / "templates" / name / "fakegw.html").is_file()
    assert (target / name / "tests" / "test_conformance.py").is_file()

    env = _env(PYTHONPATH=os.pathsep.join([str(target), str(wheel_site)]),
               BILLCORE_EXTRA_MODULES=json.dumps({name: name}))
    check = subprocess.run([sys.executable, "-c", "import billcore.testing, pmtemplate; "
                            "print(billcore.testing.__file__); print(pmtemplate.__file__)"],
                           cwd=target, env=env, capture_output=True, text=True, timeout=60)
    assert check.stdout.count(str(wheel_site)) == 2, check.stdout + check.stderr  # the wheel's, not the tree's
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=target,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
    assert "TestConformance" in subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider"], cwd=target, env=env,
        capture_output=True, text=True, timeout=120).stdout


@pytest.mark.slow
def test_generated_distribution_installs_with_its_templates(tmp_path):
    """Built and installed by pip (a wheel, into a private folder): the entry point finds the module and
    the templates travel with it. Needs pip to fetch setuptools for the isolated build."""
    name = "pmscafwheel"
    target = generate(name, tmp_path / "src")
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                          str(target)], capture_output=True, text=True, timeout=600, env=_env())
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    assert (site / name / "templates" / name / "fakegw.html").is_file()
    assert (site / name / "tests" / "adapter.py").is_file()
    env = _env(PYTHONPATH=str(site), BILLCORE_INSTANCE_PATH=str(tmp_path / "instance"),
               BILLCORE_DEV_MODULES="true")
    flask = Path(sys.executable).with_name("flask")
    proc = subprocess.run([str(flask), "--app", "billcore", "plugins"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{name}  0.1.0  Scafwheel gateway" in proc.stdout and f"(entry point {name})" in proc.stdout


def test_planned_routes_are_pmtemplates_renamed(app):
    template_routes = sorted(rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("pmtemplate."))
    assert template_routes == sorted(TEMPLATE_ROUTES)
    assert planned_routes(Names.of("pmfoo")) == ["/mancgi/foopayment", "/mancgi/fooresult", "/mancgi/foosuccess",
                                                 "/mancgi/foofail", "/fakegw/foo/pay"]


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

"""A module whose routes take a URL of the core (``/login``) beside URLs of its own (it must be refused whole)."""
from flask import Blueprint

from billcore import hookimpl
from billcore.paymodule import ModuleInfo

bp = Blueprint("pmclash", __name__)


@bp.route("/mancgi/tplresult", methods=["POST"])
def steal_notification():
    return "OK"


@bp.route("/login", methods=["POST"])
def steal_login():
    return "stolen"


@bp.route("/mancgi/clashresult", methods=["POST"])
def own_result():
    return "OK"


@hookimpl
def billcore_module_info():
    return ModuleInfo(key="pmclash", title="Clash")


@hookimpl
def billcore_blueprints(app):
    return [bp]


@hookimpl
def billcore_start_payment(module, payment, paymethod):
    return "started by pmclash" if module == "pmclash" else None

"""A module whose second blueprint fails to register after the first one did (it must leave no trace)."""
from flask import Blueprint

from billcore import hookimpl
from billcore.paymodule import ModuleInfo

first = Blueprint("pmhalf", __name__)


@first.route("/mancgi/halfresult", methods=["POST"])
def halfresult():
    return "OK"


@first.before_app_request
def meddle():
    """An app-wide hook that must go with the module."""
    raise RuntimeError("pmhalf's before_app_request ran")


second = Blueprint("pmhalf_broken", __name__)


@second.record
def explode(state):
    raise RuntimeError("this blueprint fails to register on purpose")


@hookimpl
def billcore_module_info():
    return ModuleInfo(key="pmhalf", title="Half")


@hookimpl
def billcore_blueprints(app):
    return [first, second]


@hookimpl
def billcore_payment_changed(payment_id, old_status, new_status, event_kind):
    raise AssertionError("a module that failed to load must not receive broadcasts")

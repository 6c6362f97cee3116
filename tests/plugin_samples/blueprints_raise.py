"""A module whose billcore_blueprints hook raises (it must be unregistered from the plugin manager)."""
from billcore import hookimpl
from billcore.paymodule import ModuleInfo


@hookimpl
def billcore_module_info():
    return ModuleInfo(key="pmbpraise", title="Raises")


@hookimpl
def billcore_blueprints(app):
    raise RuntimeError("no blueprints today")

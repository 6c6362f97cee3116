"""A module that describes itself under another key."""
from billcore import hookimpl
from billcore.paymodule import ModuleInfo


@hookimpl
def billcore_module_info():
    return ModuleInfo(key="pmsomethingelse", title="Wrong key")

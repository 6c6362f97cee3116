"""A module written for a billcore.gateway API newer than this billcore's."""
from billcore.gateway import ModuleInfo, hookimpl


@hookimpl
def billcore_module_info():
    return ModuleInfo(key="pmfuture", title="Future", api_version="4.0")

"""A module that fails while being imported."""
raise ImportError("this module is broken on purpose")

"""Windows certificate store and IIS bindings. Only agent/windows/api.py calls Windows; everything else runs anywhere."""

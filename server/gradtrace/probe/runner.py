#!/usr/bin/env python3
"""Starts the probe's runtime in the user's interpreter (`python runner.py worker`, or `once FILE` to debug).

Run as a script by whichever interpreter the user selected, where gradtrace itself may not be installed: it
loads the `runtime` package next to it under a private name, and takes its own directory off `sys.path`
first, so nothing of ours can shadow the user's modules.
"""

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "gradtrace_probe_runtime"


def load_runtime():
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == HERE:
        del sys.path[0]
    location = os.path.join(HERE, "runtime")
    spec = importlib.util.spec_from_file_location(NAME, os.path.join(location, "__init__.py"),
                                                  submodule_search_locations=[location])
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{NAME}.worker")


if __name__ == "__main__":
    sys.exit(load_runtime().main(sys.argv))

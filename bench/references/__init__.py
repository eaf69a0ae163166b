"""Reference servers on chatd's own stack (Twisted and Autobahn).

Each module is runnable as ``python -m bench.references.<name> --port N``
and prints one JSON line, ``{"listening": PORT, "nvx": BOOL}``, once it
accepts connections.
"""

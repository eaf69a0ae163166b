"""The rules of chat: services that know nothing of sockets or SQL.

Each service takes plain values, returns plain values or views, and raises
``ChatError`` with a code when a rule says no. Pushes to other users go
through the ``Hub`` interface, which the server's registry implements.
"""

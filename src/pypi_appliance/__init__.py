"""pypi-appliance: a private Python package index in one Debian package.

Three runtimes share this package, each with its own layer:
- core/: standard library only; the rules and mechanisms every part shares
  (names, archives, simple-API pages, atomic writes, the HTTP server, audit).
- services/: the containers' programs, on the pypiserver image's Python
  (credential checker, indexer, upstream service, pypiserver's hooks): the
  standard library, core, and what that image has (passlib, bcrypt, pypiserver).
- admin/: the host's helper (/usr/sbin/pypi-appliance), on the system Python
  with distribution packages (python3-passlib); it may use services' code.
tests/unit/test_layers.py keeps the layers apart.
"""

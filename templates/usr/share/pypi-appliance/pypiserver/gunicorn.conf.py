"""gunicorn config for pypiserver, mounted over the image's /data/gunicorn.conf.py
(its documented override point): the image's settings, and the appliance's
write path (pypi_appliance.services.pypiserver_hooks)."""

from pypi_appliance.services import pypiserver_hooks

# The image's settings (docker/gunicorn.conf.py in pypiserver's repository),
# but threads, not gevent: bottle keeps each request in a threading.local made
# when it was imported, before gevent's patching, so under gevent every
# request that waits (an upload being read, the indexer's answer) shares it
# with the others and may answer with theirs (seen: an upload answered with
# /health's body, "Missing ':action' field!" for a large upload under load).
errorlog = "-"
preload_app = True
workers = 1
worker_class = "gthread"
threads = 16

pypiserver_hooks.install()

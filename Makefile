# make deb    build dist/pypi-appliance_<version>_all.deb (VERSION=1.2.3 to choose it;
#             IMAGES=1 also builds pypi-appliance-images_<version>_<arch>.deb from this
#             machine's Docker engine, for hosts that reach no registry)
# make check  the fast tier, no Docker: ruff, mypy, vermin, shellcheck, njs and unit tests
# make test   every test, fastest first: check, then the compose stack of the built
#             .deb on this host's Docker engine, then the package checks (lintian,
#             piuparts...), then the system-container e2e suite (systemd, dpkg, debconf)
# All install what they need on a Debian host, as root or through sudo.

PYTHON ?= python3
VENV := .venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HOST_PACKAGES := python3-venv debhelper dpkg-dev
# What the fast tier runs besides the venv: the helper on Debian's own Python
# (with its passlib), shellcheck, and the njs CLI for the front door's module.
CHECK_PACKAGES := shellcheck njs python3-passlib python3-bcrypt python3-jwt python3-cryptography python3-jinja2 python3-click python3-shtab

.PHONY: deb check test test-stack test-package test-system bench builder-deb clean

$(VENV)/.installed: setup.cfg setup.py
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $(HOST_PACKAGES); }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

deb: $(VENV)/.installed
	$(VENV)/bin/python -m builder build $(if $(VERSION),--version '$(VERSION)') $(if $(IMAGES),--with-images)

check: $(VENV)/.installed
	tests/host-packages.sh $(CHECK_PACKAGES)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -n 2 tests/unit

test-stack: deb
	tests/run.sh $(VENV)/bin/pytest -ra tests/stack

test-package: deb
	tests/run.sh $(VENV)/bin/pytest -ra tests/package

test-system: deb
	tests/run.sh $(VENV)/bin/pytest -ra tests/e2e

# Fastest first, each tier with its own summary and time: a unit failure shows
# in a minute or two, a front-door failure in five, a package failure before
# the system tier starts.
test: check deb
	tests/run.sh sh -c '$(VENV)/bin/pytest -ra tests/stack && $(VENV)/bin/pytest -ra tests/package && \
		$(VENV)/bin/pytest -ra tests/e2e'

# The builder itself as a Debian package, made with stdeb and the system Python.
builder-deb:
	tests/host-packages.sh python3-stdeb python3-all dh-python python3-setuptools python3-jinja2 python3-click python3-shtab
	rm -rf deb_dist
	env PATH=/usr/sbin:/usr/bin:/sbin:/bin /usr/bin/python3 setup.py --command-packages=stdeb.command bdist_deb
	mkdir -p dist && cp deb_dist/*.deb dist/

clean:
	rm -rf build dist deb_dist *.egg-info

# Serving figures against static nginx and the recipe, measured in one run.
bench: deb
	tests/run.sh $(VENV)/bin/python -m bench.run

"""Build the pypi-appliance Debian package from templates/ and debian/."""

__version__ = "0.9.0"

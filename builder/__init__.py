"""Build the pypi-appliance Debian package from templates/ and debian/."""

__version__ = "0.8.0"

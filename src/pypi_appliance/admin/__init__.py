"""Administer this host's pypi-appliance: status, users, TLS, backups and client configuration.

Runs on the system Python with distribution packages only (python3-passlib).
"""

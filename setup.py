# stdeb (python3 setup.py --command-packages=stdeb.command bdist_deb) needs a setup.py.
from setuptools import setup

setup()

import sys

from pypi_appliance.cli import main

sys.exit(main())

import sys

from pypi_appliance.admin.cli import main

sys.exit(main())

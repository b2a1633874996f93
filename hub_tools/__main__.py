import sys

from hub_tools.cli import main

sys.exit(main())

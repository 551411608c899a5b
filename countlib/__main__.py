import sys

from countlib.cli import main

sys.exit(main())

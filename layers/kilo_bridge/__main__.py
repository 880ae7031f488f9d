import sys

from kilo_bridge.cli import main

sys.exit(main())

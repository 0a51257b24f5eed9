import sys

from trpo_bench.cli import main

sys.exit(main())

import sys

from axiom_ray.cli import main

sys.exit(main())

"""`axiom generate` as a Ray job entry point; takes exactly the flags of `axiom generate --help`.

    ray job submit --working-dir . -- python jobs/generate.py --help
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the job's working dir copy

from axiom_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))

"""`axiom generate` as a Ray job entry point; takes exactly the flags of `axiom generate --help`.

    ray job submit --working-dir . -- python jobs/generate.py --help
    python jobs/generate.py --help      # directly: joins RAY_ADDRESS / a `ray start` cluster, else starts one
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the job's working dir copy

from axiom_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))

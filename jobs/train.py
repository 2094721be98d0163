"""`axiom train` as a Ray job entry point; takes exactly the flags of `axiom train --help`.

    ray job submit --working-dir . -- python jobs/train.py --help
    python jobs/train.py --help      # directly: joins RAY_ADDRESS / a `ray start` cluster, else starts one
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the job's working dir copy

from axiom_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

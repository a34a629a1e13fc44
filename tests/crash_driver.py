"""`grpo-plug train` with the test-only `seven` task registered; used by crash tests.

python tests/crash_driver.py --config run.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpo_plug.cli import main
from grpo_plug.plugins import get_host
from tests.helpers import with_seven

if __name__ == "__main__":
    with_seven(get_host())
    sys.argv = ["grpo-plug", "train", *sys.argv[1:]]
    main()

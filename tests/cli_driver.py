"""`grpo-plug` itself with the test-only `seven` task registered (tests/test_distributed.py).

    python tests/cli_driver.py train --config run.yaml

Unlike crash_driver.py it passes its arguments through unchanged, so the learner ranks
that `train` starts under torchrun run this same script (see launch.entry_argv).
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
    main()

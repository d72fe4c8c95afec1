"""Reliability suite: bounded versions of the campaigns in ``benchmarks/campaigns/``.

The campaign scripts are not a package; their folder goes on ``sys.path`` so the tests here
import and run the very code the full campaigns run (``crash``, ``soak``, ``campaign_common``).
"""

from __future__ import annotations

import sys
from pathlib import Path

CAMPAIGNS = Path(__file__).resolve().parents[2] / "benchmarks" / "campaigns"
if str(CAMPAIGNS) not in sys.path:
    sys.path.insert(0, str(CAMPAIGNS))

"""``python3 -m arges.agent``: the discovery agent (see :mod:`arges.agent.main`)."""

import sys

from arges.agent.main import main

sys.exit(main())

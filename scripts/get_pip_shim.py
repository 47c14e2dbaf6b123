"""Stand-in for the get-pip bootstrap ansible-test downloads: ensurepip, then pip from the configured index."""

import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
# ensurepip points PIP_CONFIG_FILE at devnull; the site's pip configuration (index, CA) is needed.
os.environ.pop("PIP_CONFIG_FILE", None)
ARGS = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade"] + ARGS))

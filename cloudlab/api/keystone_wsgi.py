"""The WSGI entry point gunicorn loads for the lab's Keystone (runs in Keystone's own venv).

Keystone's configuration library parses ``sys.argv`` when the application starts, and
gunicorn's options are not Keystone's: the arguments are dropped before Keystone is
imported.  The configuration comes from ``OS_KEYSTONE_CONFIG_DIR`` and
``OS_KEYSTONE_CONFIG_FILES``, which the lab sets.
"""

import sys

sys.argv = sys.argv[:1]

from keystone.wsgi.api import application  # noqa: E402,F401

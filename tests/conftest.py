"""Test-wide settings.

Tests and notebooks always run the lab host inside a network namespace of their
own (HOST.md's traffic rule): `make test` sets CLOUDLAB_NETNS, and a bare
`pytest` run gets the same default here, before any kernel or server starts.
"""

import os

os.environ.setdefault("CLOUDLAB_NETNS", "cloudlab-test")

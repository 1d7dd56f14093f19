"""The everyday object-storage tools as the tests drive them: the AWS CLI, s3cmd, rclone, the swift CLI.

Shared by the object store's client tests (``test_object_store_clients``) and lab 08's graded
exercises (``test_exercises_lab08``), so that a lab's checks are proven with the same real
clients as the store.  Each factory takes a store's base URL and a private home folder and
returns a function that runs the tool with its arguments and fails the test, showing the
tool's output, when the tool fails.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
AWS = str(BIN / "aws")
SWIFT = str(BIN / "swift")


def run(cmd, env=None, cwd=None):
    """Run a tool and return its standard output; assert that it exists and succeeded."""
    assert shutil.which(cmd[0]), f"{cmd[0]} is missing: `make test` installs it (Makefile SYSTEM_PACKAGES)"
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
    assert result.returncode == 0, f"{cmd[0]} {cmd[1:3]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def aws_cli(url, home, user="test:tester", key="testing"):
    """``call(*args, parse=False)``: the AWS CLI against ``url`` (path-style, us-east-1); JSON parsed on ask."""
    home = Path(home)
    config = home / "config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "AWS_CONFIG_FILE": str(config),
           "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"), "AWS_ACCESS_KEY_ID": user,
           "AWS_SECRET_ACCESS_KEY": key, "AWS_EC2_METADATA_DISABLED": "true"}

    def call(*args, parse=False):
        out = run([AWS, "--endpoint-url", url, *args], env=env)
        return json.loads(out) if parse and out.strip() else out
    return call


def s3cmd_cli(url, home, user="test:tester", key="testing"):
    """``call(*args)``: s3cmd (Debian's) against ``url``, Signature V4, path-style."""
    home = Path(home)
    host = url.removeprefix("http://")
    config = home / "s3cfg"
    config.write_text(f"[default]\naccess_key = {user}\nsecret_key = {key}\nhost_base = {host}\n"
                      f"host_bucket = {host}\nuse_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}

    def call(*args):
        return run(["s3cmd", "-c", str(config), *args], env=env)
    return call


def rclone_env(url, home, user="test:tester", key="testing"):
    """Environment for ``rclone`` with a remote called ``lab:`` on ``url``."""
    return {"PATH": os.environ["PATH"], "HOME": str(home), "RCLONE_CONFIG": str(Path(home) / "rclone.conf"),
            "RCLONE_CONFIG_LAB_TYPE": "s3", "RCLONE_CONFIG_LAB_PROVIDER": "Other",
            "RCLONE_CONFIG_LAB_ACCESS_KEY_ID": user, "RCLONE_CONFIG_LAB_SECRET_ACCESS_KEY": key,
            "RCLONE_CONFIG_LAB_ENDPOINT": url, "RCLONE_CONFIG_LAB_FORCE_PATH_STYLE": "true",
            "RCLONE_CONFIG_LAB_REGION": "us-east-1"}


def swift_cli(url, cwd=None, user="test:tester", key="testing"):
    """``call(*args)``: the swift CLI logged in at ``url``/auth/v1.0, run in ``cwd``."""
    auth = ["-A", url + "/auth/v1.0", "-U", user, "-K", key]

    def call(*args, cwd=cwd):
        return run([SWIFT, *auth, *args], cwd=cwd)
    return call

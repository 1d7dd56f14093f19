"""Command line: ``python -m cloudlab COMMAND``.

Each command lives in the module it belongs to and registers here by name, so
this file stays a table of contents.  Errors a learner can fix are printed as one
message with its fix, and exit with status 2; no traceback.
"""

import argparse
import importlib
import sys

from .errors import CloudlabError

# command -> (module, one-line help); each module has add_arguments(parser) and main(args)
COMMANDS = {
    "doctor": ("cloudlab.doctor", "check the lab host's prerequisites"),
    "host": ("cloudlab.host", "bring the lab host (libvirt) up or down"),
    "image": ("cloudlab.image", "build or list guest images"),
    "object-store": ("cloudlab.object_store.cli", "run the Swift/S3 object store"),
    "ntp": ("cloudlab.ntp", "run an NTP server or query one"),
    "identity": ("cloudlab.api.identity", "install Keystone (the identity service) or show its status"),
    "openstack": ("cloudlab.api", "serve the OpenStack APIs of a lab and print its clouds.yaml"),
    "api-service": ("cloudlab.api.node_service", "serve one OpenStack API as a node's process (the lab starts it)"),
    "clean": ("cloudlab.host", "remove every resource the lab created"),
    "store-notebook": ("cloudlab.teaching.store", "run lab notebooks and store them with their outputs"),
    "grade": ("cloudlab.teaching.grade", "grade learners' notebooks against the live lab"),
    "nbgrader-source": ("cloudlab.teaching.nbgrader", "write the labs as nbgrader source notebooks"),
}


def main(argv=None):
    """Parse ``argv`` and run the chosen command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m cloudlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module_name, _command=name)
        # modules are imported only when their command runs, but their arguments are
        # needed now; a module that cannot import (missing dependency) still gets a parser
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        adder = getattr(module, f"add_{name.replace('-', '_')}_arguments", None) or \
            getattr(module, "add_arguments", None)
        if adder:
            adder(p)
    args = parser.parse_args(argv)
    try:
        module = importlib.import_module(args._module)
        runner = getattr(module, f"main_{args._command.replace('-', '_')}", None) or module.main
        return runner(args) or 0
    except CloudlabError as exc:
        print(f"cloudlab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Datastores (데이터스토어) and their versions, names the server accepts, settings from a flavor.

A **datastore** is Trove's word for a kind of database server (``postgresql``,
``mysql``, ``mariadb``...) and a **datastore version** one release of it.  The lab
offers what this host has installed: Debian's PostgreSQL packages put each major
version's server in ``/usr/lib/postgresql/VERSION/bin``.

Names: PostgreSQL accepts almost anything as a quoted identifier, but a name that
only works quoted is a trap for every later query, so the service takes the
*unquoted* form, the one a learner can type in ``psql``: lower-case letters, digits
and ``_``, starting with a letter or ``_``, at most 63 bytes (``NAMEDATALEN - 1``:
longer names are silently cut by the server).  Role names starting with ``pg_``
are reserved by the server itself, and the service keeps ``os_admin`` (its own
superuser, as Trove's guest agent does) and the built-in databases.

Settings: Trove renders each instance's configuration from its flavor (a
"configuration template"); here ``shared_buffers`` is a quarter of the flavor's
memory (PostgreSQL's usual advice), and the connection count is kept small enough
that the whole server fits the memory limit the kernel enforces.
"""

import re
from pathlib import Path

from ..errors import InvalidInput, NotFound

POSTGRES_ROOT = Path("/usr/lib/postgresql")
ADMIN_USER = "os_admin"
NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
NAME_RULE = ("lower-case letters, digits and '_', starting with a letter or '_', "
             "at most 63 characters (what psql takes unquoted)")
RESERVED_USERS = (ADMIN_USER, "postgres", "public")
RESERVED_DATABASES = ("postgres", "template0", "template1")
PORTS = {"postgresql": 5432}


def versions():
    """``{datastore: [versions, newest first]}`` that this host can run (``{"postgresql": ["15"]}``)."""
    found = []
    if POSTGRES_ROOT.is_dir():
        for d in POSTGRES_ROOT.iterdir():
            if (d / "bin" / "postgres").exists() and (d / "bin" / "initdb").exists():
                found.append(d.name)
    found.sort(key=lambda v: [int(p) if p.isdigit() else 0 for p in v.split(".")], reverse=True)
    return {"postgresql": found} if found else {}


def describe(available):
    """``postgresql 15, 13`` for the error messages that list what there is."""
    return "; ".join(f"{d} {', '.join(v)}" for d, v in available.items()) or "none installed"


def resolve(datastore, version):
    """``(datastore, version)`` checked against what this host has; version None means the newest.

    Raises:
        NotFound: an unknown datastore or version; the message lists the available ones.
    """
    available = versions()
    if datastore not in available:
        fix = (f"use one of: {describe(available)}" if available
               else "install PostgreSQL (`make lab` installs Debian's `postgresql`)")
        raise NotFound(f"no datastore {datastore!r} on this lab host", fix=fix)
    if version is None:
        return datastore, available[datastore][0]
    version = str(version)
    if version not in available[datastore]:
        raise NotFound(f"datastore {datastore} has no version {version!r} here",
                       fix=f"use one of: {describe({datastore: available[datastore]})}")
    return datastore, version


def bin_dir(version):
    """Where the server and tools of PostgreSQL ``version`` live."""
    return POSTGRES_ROOT / version / "bin"


def check_name(name, what):
    """``name`` if the service accepts it as a database (``what="database"``) or user name.

    Raises:
        InvalidInput: a name the rule refuses; the message states the rule.
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(f"{what} name {name!r} is not accepted", fix=f"use {NAME_RULE}")
    if what == "user" and name.startswith("pg_"):
        raise InvalidInput(f"user name {name!r} is reserved: PostgreSQL keeps role names starting "
                           "with pg_ for its own roles", fix="choose a name that does not start with pg_")
    reserved = RESERVED_USERS if what == "user" else RESERVED_DATABASES
    if name in reserved:
        raise InvalidInput(f"{what} name {name!r} is reserved (the server's or the service's own)",
                           fix=f"choose another name; reserved: {', '.join(reserved)}")
    return name


def check_password(password, user):
    """``password`` if usable: a non-empty string without NUL bytes.

    Raises:
        InvalidInput: anything else.
    """
    if not isinstance(password, str) or not password or "\0" in password:
        raise InvalidInput(f"user {user}: the password must be a non-empty string",
                           fix="give password='...' (any characters but NUL)")
    return password


def settings(ram_mib, vcpus):
    """Server settings from a flavor's memory and vCPUs (see the module docstring)."""
    return {
        "shared_buffers": f"{max(16, ram_mib // 4)}MB",
        "max_connections": max(10, min(100, ram_mib // 8)),
        "work_mem": "2MB",
        "max_worker_processes": max(2, vcpus * 2),
        "max_parallel_workers": vcpus,
        "effective_cache_size": f"{max(32, ram_mib // 2)}MB",
    }


SETTING_RE = re.compile(r"^[a-z][a-z0-9_.]{0,62}$")
# settings the service itself decides: where the server listens, its files, how it checks passwords
MANAGED = ("listen_addresses", "port", "unix_socket_directories", "hba_file", "ident_file", "config_file",
           "data_directory", "password_encryption")


def check_configuration(configuration):
    """``configuration`` as a dict of server settings, checked for form (the server checks the values).

    Raises:
        InvalidInput: not a dict, a malformed name, a value that is not text or a number,
            or a setting the service manages itself.
    """
    if configuration is None:
        return {}
    if not isinstance(configuration, dict):
        raise InvalidInput(f"configuration={configuration!r} is not a dict of settings",
                           fix='e.g. configuration={"work_mem": "8MB"}')
    for key, value in configuration.items():
        if not isinstance(key, str) or not SETTING_RE.match(key):
            raise InvalidInput(f"{key!r} is not a PostgreSQL setting's name", fix="e.g. work_mem, log_statement")
        if key in MANAGED:
            raise InvalidInput(f"setting {key} is the service's own (it places the server on the lab network "
                               "and its files)", fix=f"leave it out; the service sets: {', '.join(MANAGED)}")
        if not isinstance(value, (str, int, float)):
            raise InvalidInput(f"setting {key}={value!r}: give text, a number or a bool", fix='e.g. "8MB", 64 or True')
    return dict(configuration)


def render_config(values):
    """``postgresql.conf`` text for ``values`` (strings quoted as the server reads them)."""
    lines = ["# written by cloudlab (cloudlab/database/datastore.py): the instance's settings"]
    for key, value in values.items():
        if isinstance(value, bool):
            value = "on" if value else "off"
        elif isinstance(value, str):
            value = "'" + value.replace("'", "''") + "'"
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


HBA = """\
# written by cloudlab: every connection, local or over the lab network, proves its password
local   all   all                  scram-sha-256
host    all   all   0.0.0.0/0      scram-sha-256
host    all   all   ::/0           scram-sha-256
"""

"""Databases and users of an instance: the SQL the service runs as its own superuser.

Trove's guest agent does this for each datastore; for PostgreSQL it is plain SQL
through the instance's Unix socket, with identifiers quoted by psycopg (``sql.Identifier``)
and passwords passed as literals the server hashes (``scram-sha-256``).  Each function
takes ``admin``, the service's ``admin(instance, database)`` connection factory.
"""

from psycopg import sql

from ..errors import Conflict, NotFound
from . import datastore


def list_databases(admin, instance):
    """The names of an instance's databases (not the server's own: postgres, template0/1)."""
    with admin(instance) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate "
                            "AND datname <> 'postgres' ORDER BY datname").fetchall()
    return [r[0] for r in rows]

def create_database(admin, instance, name):
    """Create database ``name`` on ``instance``.

    Raises:
        InvalidInput: a name the rule refuses (the rule is quoted).
        Conflict: it exists.
    """
    from psycopg import sql
    name = datastore.check_name(name, "database")
    with admin(instance) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            raise Conflict(f"database {name!r} already exists on {instance.name}", fix="choose another name")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name

def delete_database(admin, instance, name):
    """Drop database ``name`` (connections to it are ended first).

    Raises:
        NotFound: no such database.
    """
    from psycopg import sql
    if name not in list_databases(admin, instance):
        raise NotFound(f"instance {instance.name} has no database {name!r}",
                       fix=f"its databases: {', '.join(list_databases(admin, instance)) or 'none'}")
    with admin(instance) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

def list_users(admin, instance):
    """An instance's users: ``[{"name": ..., "databases": [...]}]`` (databases they may create in)."""
    with admin(instance) as conn:
        rows = conn.execute(
            "SELECT r.rolname, ARRAY(SELECT d.datname FROM pg_database d WHERE NOT d.datistemplate "
            "AND d.datname <> 'postgres' AND has_database_privilege(r.rolname, d.datname, 'CREATE') "
            "ORDER BY d.datname) FROM pg_roles r WHERE r.rolcanlogin AND r.rolname <> %s "
            "AND r.rolname NOT LIKE 'pg\\_%%' ORDER BY r.rolname", (datastore.ADMIN_USER,)).fetchall()
    return [{"name": name, "databases": list(dbs)} for name, dbs in rows]

def create_user(admin, instance, name, password, databases=()):
    """Create a user who logs in with ``password`` and may use (and create tables in) ``databases``.

    Raises:
        InvalidInput: a name the rule refuses (the rule is quoted), or an empty password.
        NotFound: one of ``databases`` does not exist.
        Conflict: the user exists.
    """
    from psycopg import sql
    name = datastore.check_name(name, "user")
    password = datastore.check_password(password, name)
    databases = [d["name"] if isinstance(d, dict) else d for d in databases]
    with admin(instance) as conn:
        existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        missing = [d for d in databases if d not in existing]
        if missing:
            raise NotFound(f"instance {instance.name} has no database {missing[0]!r}",
                           fix="create it first: create_database()")
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            raise Conflict(f"user {name!r} already exists on {instance.name}", fix="choose another name")
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name),
                                                                        sql.Literal(password)))
        for d in databases:
            conn.execute(sql.SQL("GRANT ALL PRIVILEGES ON DATABASE {} TO {}").format(
                sql.Identifier(d), sql.Identifier(name)))
    for d in databases:
        # since PostgreSQL 15 only the database's owner may create in its public schema
        with admin(instance, d) as conn:
            conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(name)))
    return {"name": name, "databases": databases}

def delete_user(admin, instance, name):
    """Drop user ``name``; what it owned passes to the service's admin.

    Raises:
        NotFound: no such user.
    """
    from psycopg import sql
    users = [u["name"] for u in list_users(admin, instance)]
    if name not in users:
        raise NotFound(f"instance {instance.name} has no user {name!r}",
                       fix=f"its users: {', '.join(users) or 'none'}")
    ident = sql.Identifier(name)
    for d in list_databases(admin, instance) + ["postgres"]:
        with admin(instance, d) as conn:
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(ident, sql.Identifier(datastore.ADMIN_USER)))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
    with admin(instance) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(ident))

# -- backups ---------------------------------------------------------------------

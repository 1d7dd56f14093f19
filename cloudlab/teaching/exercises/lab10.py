"""Lab 10 (database storage): the graded exercises' checks, read from the live lab.

The checks read the database service's records and the instances themselves: they
connect as the learner's user with the learner's password where the exercise is
about that user, and as the service's own superuser (``connect_as_admin``, the
operator's view) to read what was made; backups are looked up in the object store.
"""

from ..exercise import Check, exercise

FOUR_WAYS = {"object": True, "block": False, "file": True, "database": True}


def _instance(lab, name):
    try:
        return lab.database.get_instance(name)
    except Exception:
        return None


def _query(lab, instance, database, sql, params=()):
    with lab.database.connect_as_admin(instance, database) as conn:
        return conn.execute(sql, params).fetchall()


@exercise("10.1", title="Provision a database", points=2)
def provision(lab, answer=None):
    """ex-inventory: PostgreSQL on m1.small with a 1 GiB volume, database stock, user clerk who logs in with ``answer``."""
    inventory = _instance(lab, "ex-inventory")
    yield Check("an instance named ex-inventory exists", inventory is not None,
                hint="lab.database.create_instance('ex-inventory', ...)")
    yield Check("it is ACTIVE", inventory.status == "ACTIVE", hint=f"it is {inventory.status}: {inventory.fault}")
    yield Check("it runs PostgreSQL on flavor m1.small", (inventory.datastore, inventory.flavor) == ("postgresql", "m1.small"),
                hint="datastore_name='postgresql', flavor='m1.small'")
    yield Check("its data is on a 1 GiB volume", inventory.volume_size == 1 and inventory.volume_id is not None,
                hint="volume_size=1")
    yield Check("it has a database stock", "stock" in lab.database.list_databases(inventory),
                hint="databases=['stock'], or create_database()")
    users = {u["name"]: u["databases"] for u in lab.database.list_users(inventory)}
    yield Check("user clerk may use stock", "stock" in users.get("clerk", []),
                hint="users=[{'name': 'clerk', 'password': ..., 'databases': ['stock']}]")
    yield Check("answer is clerk's password", isinstance(answer, str) and answer != "",
                hint="answer = '<the password you gave clerk>'")
    try:
        with inventory.connect("clerk", answer, "stock") as conn:
            ok = conn.execute("SELECT current_user").fetchone()[0] == "clerk"
    except Exception:
        ok = False
    yield Check("clerk logs in to stock with that password", ok)


@exercise("10.2", title="A table, an index, a transaction", points=3)
def table_index_transaction(lab):
    """items(sku, qty) in stock, owned by clerk, an index on qty, and 5 units moved from A to B."""
    inventory = _instance(lab, "ex-inventory")
    yield Check("instance ex-inventory is ACTIVE", inventory is not None and inventory.status == "ACTIVE",
                hint="do exercise 10.1 first")
    owner = _query(lab, inventory, "stock", "SELECT tableowner FROM pg_tables WHERE tablename = 'items'")
    yield Check("stock has a table items", bool(owner), hint="CREATE TABLE items (sku text PRIMARY KEY, qty integer NOT NULL)")
    yield Check("clerk made it (its owner is clerk)", owner[0][0] == "clerk", hint="connect as clerk, not another user")
    indexes = [row[0] for row in _query(lab, inventory, "stock",
                                        "SELECT indexdef FROM pg_indexes WHERE tablename = 'items'")]
    yield Check("items has a primary key on sku", any("UNIQUE" in d and "(sku)" in d for d in indexes),
                hint="sku text PRIMARY KEY")
    yield Check("items has an index on qty", any(d.endswith("(qty)") for d in indexes),
                hint="CREATE INDEX ... ON items (qty)")
    rows = dict(_query(lab, inventory, "stock", "SELECT sku, qty FROM items"))
    yield Check("items holds A, B and C", {"A", "B", "C"} <= set(rows), hint="INSERT the three rows")
    yield Check("5 units moved from A to B: A=5, B=15, C=0", (rows["A"], rows["B"], rows["C"]) == (5, 15, 0),
                hint="start from A=10, B=10, C=0; two UPDATEs in one transaction, then commit")


@exercise("10.3", title="Back up, then restore into a new instance", points=3)
def backup_restore(lab):
    """Backup ex-nightly of ex-inventory in the object store, restored as instance ex-restored with the same rows."""
    db = lab.database
    try:
        backup = db.get_backup("ex-nightly")
    except Exception:
        backup = None
    yield Check("a backup named ex-nightly exists", backup is not None,
                hint="lab.database.create_backup('ex-inventory', 'ex-nightly')")
    yield Check("it is COMPLETED and of ex-inventory", (backup.status, backup.instance_name) == ("COMPLETED", "ex-inventory"))
    try:
        head = lab.object_store.connection().head_object(backup.container, backup.object_name)
    except Exception:
        head = {}
    yield Check("its dump is an object in the object store, of the backup's size",
                int(head.get("content-length", -1)) == backup.size)
    restored = _instance(lab, "ex-restored")
    yield Check("an instance ex-restored exists and is ACTIVE", restored is not None and restored.status == "ACTIVE",
                hint="lab.database.create_instance('ex-restored', restore_point='ex-nightly')")
    yield Check("it was restored from ex-nightly", restored.restored_from == backup.id,
                hint="restore_point='ex-nightly'")
    query = "SELECT sku, qty FROM items ORDER BY sku"
    yield Check("it holds the same items as ex-inventory",
                _query(lab, restored, "stock", query) == _query(lab, _instance(lab, "ex-inventory"), "stock", query),
                hint="take the backup after exercise 10.2, and change nothing after it")


@exercise("10.4", title="Which storage can two servers use at once?", points=2)
def four_ways(lab, answer=None):
    """A dict: for each of object, block, file and database storage, whether two servers may use it at the same time."""
    yield Check("answer is a dict with keys object, block, file, database",
                isinstance(answer, dict) and set(answer) == set(FOUR_WAYS),
                hint="answer = {'object': ..., 'block': ..., 'file': ..., 'database': ...}")
    yield Check("each value is True or False", all(isinstance(v, bool) for v in answer.values()))
    wrong = sorted(k for k in FOUR_WAYS if answer[k] != FOUR_WAYS[k])
    yield Check("each matches what the lab showed", not wrong,
                hint=f"look again at the table of section 5 for: {', '.join(wrong)}")

# Reference solutions of lab 10's graded exercises: tests/test_labs_graded.py puts each
# section into the answer cell of its exercise and expects full points.

# %% solution 10.1
inventory = db.create_instance("ex-inventory", datastore_name="postgresql", flavor="m1.small", volume_size=1,
                               databases=["stock"],
                               users=[{"name": "clerk", "password": "clerk-secret", "databases": ["stock"]}])
answer = "clerk-secret"

# %% solution 10.2
inventory = db.get_instance("ex-inventory")
with inventory.connect("clerk", "clerk-secret", "stock") as c:
    c.execute("CREATE TABLE items (sku text PRIMARY KEY, qty integer NOT NULL)")
    c.execute("CREATE INDEX items_qty ON items (qty)")
    c.execute("INSERT INTO items VALUES ('A', 10), ('B', 10), ('C', 0)")
    c.commit()
    with c.transaction():
        c.execute("UPDATE items SET qty = qty - 5 WHERE sku = 'A'")
        c.execute("UPDATE items SET qty = qty + 5 WHERE sku = 'B'")

# %% solution 10.3
db.create_backup("ex-inventory", "ex-nightly")
db.create_instance("ex-restored", restore_point="ex-nightly")

# %% solution 10.4
answer = {"object": True, "block": False, "file": True, "database": True}

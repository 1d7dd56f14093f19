# Reference solutions of lab 09's graded exercises: tests/test_labs_graded.py puts each
# section into the answer cell of its exercise and expects full points.

# %% solution 09.1
docs = sfs.create_share("ex-docs", size=1)
docs.allow(ip1, "rw")
docs.allow(ip2, "ro")

# %% solution 09.2
docs = sfs.get_share("ex-docs")
for server in (web1, web2):
    server.run(docs.mount_command("/mnt/docs"))
web1.run("echo 'hello from web1' > /mnt/docs/hello.txt")
answer = web2.run("cat /mnt/docs/hello.txt").stdout

# %% solution 09.3
docs.extend(3)
answer = int(web1.run("df -Pk /mnt/docs | tail -1").stdout.split()[1])

# %% solution 09.4
web2.run("umount /mnt/docs")
docs.deny(ip2)

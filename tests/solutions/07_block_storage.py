# Reference solutions of lab 07's graded exercises: tests/test_labs_graded.py puts each
# section into the answer cell of its exercise and expects full points.

# %% solution 07.1
ex1 = bs.create_volume("ex1", size=1)
ex1.attach(web1)
# the guest's name for the disk: the line of lsblk that shows ex1's serial
answer = "/dev/" + next(line.split()[0] for line in web1.run("lsblk").stdout.splitlines() if ex1.id[:20] in line)

# %% solution 07.2
ex2 = bs.create_volume("ex2", size=1)
dev = ex2.attach(web1).device
web1.run(f"mke2fs -F {dev} > /dev/null 2>&1 && mkdir -p /mnt/ex2 && mount {dev} /mnt/ex2 && "
         "echo cloudlab > /mnt/ex2/hello.txt && umount /mnt/ex2")
ex2.detach()

# %% solution 07.3
bs.extend_volume("ex1", 3)
name = bs.get_volume("ex1").device_on("web1")
answer = int(web1.run(f"blockdev --getsize64 {name}").stdout)

# %% solution 07.4
quotas, usage = bs.quotas, bs.usage()
answer = min(quotas.volumes - usage["volumes"], quotas.gigabytes - usage["gigabytes"])

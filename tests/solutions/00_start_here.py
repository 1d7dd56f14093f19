# Reference solutions of lab 00 (see cloudlab/teaching/grade.py for the format)

# %% solution 00.1
answer = lab.host.accel

# %% solution 00.2
import re
xml = host.virsh("net-dumpxml", host.network)
start, end = re.search(r"<range start='([\d.]+)' end='([\d.]+)'", xml).groups()
answer = int(end.rsplit(".", 1)[1]) - int(start.rsplit(".", 1)[1]) + 1

# %% solution 00.3
busybox = lab.image.get_image("busybox")
answer = busybox.virtual_size / busybox.size

# %% solution 00.4
answer = lab.host.free_memory_mib() // lab.compute.get_flavor("m1.tiny").ram_mib

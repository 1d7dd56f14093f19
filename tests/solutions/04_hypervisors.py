# Reference solutions of labs/04_hypervisors.ipynb (see cloudlab/teaching/grade.py)

# %% solution 04.1
answer = server_fv.guest_view().disks[0]

# %% solution 04.2
pv2 = lab.compute.create_server("pv2", profile="virtio", flavor="m1.medium")

# %% solution 04.3
answer = len(lab.compute.get_server("pv2").qemu_process().vcpu_threads)

# %% solution 04.4
accel = lab.host.accel
answer = results.get(f"VM virtio / {accel}", "net_mibps") / results.get(f"VM emulated / {accel}", "net_mibps")

# Reference solutions of lab 06 (see cloudlab/teaching/grade.py for the format)

# %% solution 06.1
web2 = compute.create_server("web2", image="busybox", flavor="m1.tiny")

# %% solution 06.2
answer = server.disk_info()["backing-filename"]

# %% solution 06.3
web2 = compute.get_server("web2")
web2.resize("m1.small")
web2.confirm_resize()

# %% solution 06.4
compute.set_quota(instances=2)
try:
    compute.create_server("web3")
except cl.CloudlabError as err:
    answer = type(err).__name__

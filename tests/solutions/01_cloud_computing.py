# Reference solutions of lab 01's graded exercises: tests/test_labs_graded.py puts each
# section into the answer cell of its exercise and expects full points.

# %% solution 01.1
teal = lab.projects.create_project("teal", quotas={"containers": 1})
teal.create_container("app")
try:
    teal.create_container("second")
except cl.CloudlabError as err:
    answer = type(err).__name__

# %% solution 01.2
until = time.time()
usage = blue.usage(until=until)
answer = {"until": until, "total": sum(usage[key] * price for key, price in cl.projects.PRICES.items())}

# %% solution 01.3
answer = cl.projects.comparison_template()
answer["you buy the hardware before you use it"].update({"on-premise": True, "diy-iaas": False, "managed": False})
answer["you pay for what you use, metered"].update({"on-premise": False, "diy-iaas": True, "managed": True})
answer["a new server or instance in minutes, by self-service"].update(
    {"on-premise": False, "diy-iaas": True, "managed": True})
answer["you install and patch the operating system"].update({"on-premise": True, "diy-iaas": True, "managed": False})
answer["the machines stand in your own building"].update({"on-premise": True, "diy-iaas": False, "managed": False})

# %% solution 01.4
policy = cl.platform.ScalingPolicy(shop, minimum=1, maximum=2, target_per_instance=20)
policy.run_with_load("cgi-bin/notes?work=200", load_s=4, after_s=3)

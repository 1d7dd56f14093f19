# Reference solutions of lab 03's graded exercises (tests/test_labs_graded.py grades the lab with them).

# %% solution 03.1
answer = json.loads(api.cli("token issue -f json").stdout)["project_id"]

# %% solution 03.2
api.cli("server", "create", "--image", "busybox", "--flavor", "m1.small", "--network", lab.host.network,
        "--wait", "ex-web")

# %% solution 03.3
Path("hello.txt").write_text("hello OpenStack\n")
api.cli("container create ex-notes")
api.cli("object create --name hello.txt ex-notes hello.txt")
Path("hello.txt").unlink()

# %% solution 03.4
answer = json.loads(api.cli("server show ex-web -f json").stdout)["OS-EXT-SRV-ATTR:instance_name"]

# %% solution 03.5
api.cli("volume create --size 1 ex-data")
api.cli("server add volume ex-web ex-data")

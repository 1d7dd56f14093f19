# Reference solutions of lab 11 (NTP); tests/test_labs_graded.py fills them in and expects full points.

# %% solution 11.1
one = lab.ntp.exchange(mystery)
offset = ((one.t2 - one.t1) + (one.t3 - one.t4)) / 2
delay = (one.t4 - one.t1) - (one.t3 - one.t2)

# %% solution 11.2
h["s2b"].skew(-3.0)
time.sleep(2)
answer = "step" if h["s2b"].clock.steps else "slew"     # 3 s is far over the 128 ms threshold

# %% solution 11.3
right = lab.ntp.add_server(name="right")
wrong1 = lab.ntp.add_server(name="wrong1", offset=1.5)
wrong2 = lab.ntp.add_server(name="wrong2", offset=1.5)
voter = lab.ntp.add_client([right, wrong1, wrong2], poll=0.3, name="voter")
time.sleep(2)
answer = next(row["name"] for row in voter.sources() if row["state"] == "x")

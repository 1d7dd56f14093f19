# Reference solutions of lab 02's graded exercises: tests/test_labs_graded.py puts each
# section into the answer cell of its exercise and expects full points.

# %% solution 02.1
import pathlib, tempfile
site = pathlib.Path(tempfile.mkdtemp()) / "site"
site.mkdir()
(site / "index.html").write_text("<h1>hello from PaaS</h1>")
lab.platform.deploy(site, name="site")

# %% solution 02.2
answer = cl.platform.matrix_template()
yours = {"on-premise": 9, "iaas": 5, "paas": 2, "saas": 0}
for model, column in answer.items():
    for i, layer in enumerate(cl.platform.LAYERS):
        column[layer] = "you" if i < yours[model] else "provider"

# %% solution 02.3
app.scale(3)
answer = {app.get("/cgi-bin/notes").headers["x-served-by"] for _ in range(6)}

# %% solution 02.4
saas.post("/cgi-bin/notes", "cloudlab", tenant="myco")
answer = saas.get("/cgi-bin/notes?tenant=myco").headers["x-served-by"]

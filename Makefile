# cloudlab: two commands do all the set-up.
#   make lab   installs what is missing, builds the guest image, brings up the lab host, starts JupyterLab
#   make test  the same set-up without JupyterLab, then every test and every notebook
# Both are idempotent: a second run reuses the venv, the image and the host.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# JupyterLab refuses to run as root unless told; root is how CI and containers run
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
JUPYTER_PORT ?= 8888

# Debian packages the lab uses (see README: troubleshooting); podman, runc and the CNI
# plugins are the container engine (cloudlab/containers/).  The kernel for the guest
# image is not installed: `cloudlab image build` downloads the .deb and unpacks it.
# dnsmasq-utils: dhcp_release, which gives a deleted server's DHCP lease back.
SYSTEM_PACKAGES := qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-daemon-driver-qemu openssh-server \
	libvirt-clients libvirt-dev pkg-config gcc libc6-dev python3-dev python3-venv dnsmasq-base busybox-static \
	cpio kmod xz-utils graphviz iproute2 chrony ntpsec-ntpdate memcached wrk rclone s3cmd dnsmasq-utils \
	nfs-ganesha nfs-ganesha-vfs xfsprogs podman runc conmon containernetworking-plugins iptables \
	chromium chromium-driver fonts-noto-cjk postgresql haproxy
# (chromium, chromium-driver: the browser test runs lab 00 in JupyterLab in headless Chromium;
#  fonts-noto-cjk gives its screenshot the labs' Korean glyphs)

# Python packages: requirements.txt names them, requirements.lock pins every one (and what they
# pull in).  `make lock` refreshes the lock with uv, resolving as PyPI stood on LOCK_DATE, so the
# same requirements give the same lock whenever and wherever it runs; raise LOCK_DATE to take newer
# releases.  Installs (make lab, make test) read only the lock.
UV_VERSION := 0.13.8
LOCK_DATE ?= 2026-12-01
LOCK_PYTHON := 3.10
LOCKS := requirements.lock requirements-nbgrader.lock

# JupyterLab as `make lab` starts it (tests/test_browser.py starts it through `make lab` too).
# news_url=None and NeverCheckForUpdate: no pop-up asking to fetch Jupyter's news, and no request
# to a website for news or updates; a read-only extension manager never queries PyPI from the
# page (the lab talks to nothing outside this machine).
JUPYTER_FLAGS = --no-browser $(ALLOW_ROOT) --ip=127.0.0.1 --port=$(JUPYTER_PORT) \
	--ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/labs/00_start_here.ipynb \
	--LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate \
	--LabApp.extension_manager=readonly

# Tests and notebooks run the lab host inside a network namespace of their own, so that
# no packet of the lab leaves this machine.  `make lab` uses the host's network unless
# CLOUDLAB_NETNS is set (set it on a shared machine: see README).
TEST_NETNS ?= cloudlab-test

# JupyterLab's terminal is a shell of the user who started it: as root, the terminal (and
# anyone holding the token) is a root shell on this machine.  It stays on 127.0.0.1 with
# its token either way; as root, `make lab` says so once (README: a normal user).
ROOT_WARNING := warning: JupyterLab runs as root, so its terminal (and anyone with its token) is a root shell \
	on this machine; it listens on 127.0.0.1 only. Prefer a normal user in the libvirt group (see README)

.PHONY: lab test setup system venv image host-up host-down clean bench help jupyter-warning identity lock lock-check notebooks

help:
	@echo "make lab    set up and start JupyterLab at labs/00_start_here.ipynb"
	@echo "make test   set up, then run every test and every notebook"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make clean  remove every resource the lab created and stop its host"
	@echo "make lock   re-pin every Python dependency (requirements*.lock) after editing requirements*.txt"

system:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "== installing system packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# the guest kernel is fetched with apt-get download: apt must know the package
	@apt-cache show linux-image-amd64 >/dev/null 2>&1 || $(SUDO) apt-get update -qq

# Each lock starts with the sha256 of the requirements file it was made from; an install refuses
# a lock that is older than its requirements, rather than installing something unpinned.
lock-check:
	@for lock in $(LOCKS); do req=$${lock%.lock}.txt; \
		want="# $$req sha256: $$(sha256sum $$req | cut -d' ' -f1)"; \
		if [ "$$(head -1 $$lock 2>/dev/null)" != "$$want" ]; then \
			echo "$$lock is older than $$req: run \`make lock\` and commit both" >&2; exit 1; fi; done

lock:
	@[ -x $(VPY) ] || $(PYTHON) -m venv $(VENV)
	@$(VPY) -m pip install -q uv==$(UV_VERSION)
	@for lock in $(LOCKS); do req=$${lock%.lock}.txt; \
		echo "== $$lock from $$req (PyPI as of $(LOCK_DATE))"; \
		rm -f $$lock.tmp; \
		$(VENV)/bin/uv pip compile $$req --quiet --universal --python-version $(LOCK_PYTHON) \
			--exclude-newer $(LOCK_DATE) --custom-compile-command "make lock" --no-config -o $$lock.tmp \
			|| { rm -f $$lock.tmp; exit 1; }; \
		{ echo "# $$req sha256: $$(sha256sum $$req | cut -d' ' -f1)"; cat $$lock.tmp; } > $$lock; \
		rm -f $$lock.tmp; done

$(VENV)/.installed: requirements.txt requirements.lock pyproject.toml
	@$(MAKE) -s lock-check
	@echo "== python environment ($(VENV))"
	@[ -x $(VPY) ] || $(PYTHON) -m venv $(VENV)
	@$(VPY) -m pip install -q "$$(grep -m1 '^pip==' requirements.lock)"
	@$(VPY) -m pip install -q -r requirements.lock
	@# editable: notebooks (run from labs/) import the package from this checkout
	@$(VPY) -m pip install -q --no-deps -e .
	@touch $@

# JupyterLab's settings for every user of this venv: never ask to fetch Jupyter's news (the pop-up
# that greets a new user) and never check a website for updates
JUPYTER_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
$(JUPYTER_OVERRIDES): labs/jupyterlab-overrides.json $(VENV)/.installed
	@mkdir -p $(dir $@)
	@cp $< $@

venv: system $(VENV)/.installed $(JUPYTER_OVERRIDES)

image: venv
	@$(VPY) -m cloudlab image build

# Keystone, in a venv of its own under the cache (its pins stay out of .venv); a no-op once installed
identity: venv
	@$(VPY) -m cloudlab identity install

setup: system venv image identity

host-up: setup
	@$(VPY) -m cloudlab host up

host-down:
	@[ -x $(VPY) ] && $(VPY) -m cloudlab host down || true

lab: setup
	@$(VPY) -m cloudlab host up
	@$(VPY) -m cloudlab doctor || true
	@$(MAKE) -s --no-print-directory jupyter-warning
	@echo "== JupyterLab on http://127.0.0.1:$(JUPYTER_PORT)/ (the URL with its token follows)"
	@# the terminal's `OS_CLOUD=cloudlab openstack ...` reads the clouds.yaml the newest lab writes
	@export OS_CLIENT_CONFIG_FILE=$$($(VPY) -c 'from cloudlab import config; print(config.home() / "clouds.yaml")'); \
	$(VENV)/bin/jupyter lab $(JUPYTER_FLAGS)

jupyter-warning:
	@[ "$$(id -u)" != 0 ] || echo "$(ROOT_WARNING)"

# The host comes up once for the whole run and always goes down, pass or fail.
test: setup
	@export CLOUDLAB_NETNS=$(TEST_NETNS); \
	$(VPY) -m cloudlab host up || exit $$?; \
	$(VPY) -m pytest --durations=20 tests labs; rc=$$?; \
	$(VPY) -m cloudlab host down; \
	$(VPY) -m cloudlab host leftovers || rc=1; \
	exit $$rc

# Run lab notebooks again and store them with their outputs, as the tests run them:
#   make notebooks NB="labs/04_hypervisors.ipynb labs/07_block_storage.ipynb"
notebooks: setup
	@[ -n "$(NB)" ] || { echo 'name the notebooks: make notebooks NB="labs/NN_name.ipynb ..."'; exit 2; }
	@export CLOUDLAB_NETNS=$(TEST_NETNS); \
	$(VPY) -m cloudlab host up || exit $$?; \
	$(VPY) -m cloudlab store-notebook $(NB); rc=$$?; \
	$(VPY) -m cloudlab host down; exit $$rc

bench: setup
	@export CLOUDLAB_NETNS=$(TEST_NETNS); \
	$(VPY) -m cloudlab host up || exit $$?; \
	for b in bench/*.py; do echo "== $$b"; $(VPY) $$b || rc=1; done; \
	$(VPY) -m cloudlab host down; exit $${rc:-0}

clean:
	@[ -x $(VPY) ] && $(VPY) -m cloudlab clean || true

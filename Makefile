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

# Debian packages the lab uses (see README: troubleshooting).  The kernel for the guest
# image is not installed: `cloudlab image build` downloads the .deb and unpacks it.
SYSTEM_PACKAGES := qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-daemon-driver-qemu \
	libvirt-clients libvirt-dev pkg-config gcc libc6-dev python3-dev python3-venv dnsmasq-base busybox-static \
	cpio kmod xz-utils graphviz iproute2 chrony ntpsec-ntpdate memcached wrk rclone s3cmd \
	nfs-ganesha nfs-ganesha-vfs xfsprogs

# Tests and notebooks run the lab host inside a network namespace of their own, so that
# no packet of the lab leaves this machine.  `make lab` uses the host's network unless
# CLOUDLAB_NETNS is set (set it on a shared machine: see README).
TEST_NETNS ?= cloudlab-test

.PHONY: lab test setup system venv image host-up host-down clean bench help

help:
	@echo "make lab    set up and start JupyterLab at labs/00_start_here.ipynb"
	@echo "make test   set up, then run every test and every notebook"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make clean  remove every resource the lab created and stop its host"

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

$(VENV)/.installed: requirements.txt pyproject.toml
	@echo "== python environment ($(VENV))"
	@[ -x $(VPY) ] || $(PYTHON) -m venv $(VENV)
	@$(VPY) -m pip install -q --upgrade pip
	@$(VPY) -m pip install -q -r requirements.txt
	@# editable: notebooks (run from labs/) import the package from this checkout
	@$(VPY) -m pip install -q --no-deps -e .
	@touch $@

venv: system $(VENV)/.installed

image: venv
	@$(VPY) -m cloudlab image build

setup: system venv image

host-up: setup
	@$(VPY) -m cloudlab host up

host-down:
	@[ -x $(VPY) ] && $(VPY) -m cloudlab host down || true

lab: setup
	@$(VPY) -m cloudlab host up
	@$(VPY) -m cloudlab doctor || true
	@echo "== JupyterLab on http://127.0.0.1:$(JUPYTER_PORT)/ (the URL with its token follows)"
	@$(VENV)/bin/jupyter lab --no-browser $(ALLOW_ROOT) --ip=127.0.0.1 --port=$(JUPYTER_PORT) \
		--ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/labs/00_start_here.ipynb

# The host comes up once for the whole run and always goes down, pass or fail.
test: setup
	@export CLOUDLAB_NETNS=$(TEST_NETNS); \
	$(VPY) -m cloudlab host up || exit $$?; \
	$(VPY) -m pytest tests labs; rc=$$?; \
	$(VPY) -m cloudlab host down; \
	$(VPY) -m cloudlab host leftovers || rc=1; \
	exit $$rc

bench: setup
	@export CLOUDLAB_NETNS=$(TEST_NETNS); \
	$(VPY) -m cloudlab host up || exit $$?; \
	for b in bench/*.py; do echo "== $$b"; $(VPY) $$b || rc=1; done; \
	$(VPY) -m cloudlab host down; exit $${rc:-0}

clean:
	@[ -x $(VPY) ] && $(VPY) -m cloudlab clean || true

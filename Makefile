# Strongroom: `make run` starts a local cluster, `make test` installs everything and runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Debian packages the test suite calls (independent implementations to check our output against; iproute2 for
# ss, which shows what a node listens on; faketime for a client whose clock is off; a JDK and procps for the
# docs' Java and nginx recipes; softhsm2, the token PyKCS11's suite runs against beside Strongroom).
DEB_PACKAGES := openssl p11-kit p11-kit-modules opensc gnutls-bin libengine-pkcs11-openssl nginx-light curl postgresql iproute2 \
	faketime openjdk-17-jdk-headless procps softhsm2

.PHONY: install run test check bench deps-debian clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.check-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[check]'
	touch $@

install: $(VENV)/.installed

# `make check`: lint (ruff, the rules pyproject.toml selects), types (mypy --strict over src/strongroom) and the
# layer contracts of docs/architecture.md (import-linter).
check: $(VENV)/.check-installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# `make run SOCKET_GROUP=nogroup`: members of that group may use the PKCS#11 socket too (nginx's workers as nobody).
SOCKET_GROUP ?=
run: install
	$(VENV)/bin/strongroom up --data-dir ./var $(if $(SOCKET_GROUP),--socket-group $(SOCKET_GROUP))

deps-debian:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

test: deps-debian $(VENV)/.test-installed
	$(PY) -m pytest -n 2 --dist loadfile -q -m 'slow or not slow'

# `make bench`: the node through the SDK next to cryptography and SoftHSM2 (Debian softhsm2 + python-pkcs11);
# BENCH_ARGS passes options to bench/run.py, e.g. BENCH_ARGS=--json; then the cluster rows (bench/cluster.py:
# signatures against 1, 2 and 3 HSMs, token-key creation with 1 and 64 writers), CLUSTER_BENCH_ARGS for its options;
# then signatures through PKCS#11 (bench/p11_throughput.py: the agent next to SoftHSM2 in-process and behind the stock
# p11-kit server, 1 and 8 application threads), PKCS11_BENCH_ARGS for its options; then another peer's login latency
# alone and during a flood of logins (bench/login_flood.py), LOGIN_BENCH_ARGS for its options.
BENCH_DEB_PACKAGES := softhsm2 p11-kit p11-kit-modules
BENCH_PIP_PACKAGES := python-pkcs11==0.10.1
BENCH_ARGS ?=
CLUSTER_BENCH_ARGS ?=
PKCS11_BENCH_ARGS ?=
LOGIN_BENCH_ARGS ?=

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet $(BENCH_PIP_PACKAGES)
	touch $@

bench: install $(VENV)/.bench-installed
	@missing=""; for p in $(BENCH_DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; } >&2; \
	fi
	@$(PY) bench/run.py $(BENCH_ARGS)
	@$(PY) bench/cluster.py $(CLUSTER_BENCH_ARGS)
	@$(PY) bench/p11_throughput.py $(PKCS11_BENCH_ARGS)
	@$(PY) bench/login_flood.py $(LOGIN_BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache

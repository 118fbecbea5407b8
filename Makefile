# Every target sets itself up on a fresh machine that has only python3.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: test demo bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

# tests/install_tshark.sh installs tshark for the Wireshark dissector tests when missing
# (root + apt-get only); it never fails the build: without tshark those tests skip.
# tests/install_sshd.sh does the same for OpenSSH's server (the deploy tests).
test: $(STAMP)
	-@sh tests/install_tshark.sh
	-@sh tests/install_sshd.sh
	$(PY) -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(VENV)/bin/lotc demo

bench: $(STAMP)
	$(PY) -m bench.run_all

# ruff and mypy come with the test extra (pyproject.toml); mypy's scope and
# strictness are in [tool.mypy] there.
lint: $(STAMP)
	$(VENV)/bin/ruff check lotc protocol admin_console tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) var

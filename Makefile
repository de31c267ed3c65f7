# Rally: the two commands a newcomer needs.
#   make run    install, migrate, load demo data, start admin + worker + beat + mail sink
#   make test   install and run the whole test suite
PYTHON ?= python3
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test lint install

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Both are for development: DEBUG on (unless set otherwise), so that no variable is
# needed; settings then keep a random SECRET_KEY in var/secret-key.
run test: export DEBUG ?= 1

run: $(VENV)/.installed
	python manage.py migrate --no-input
	python manage.py seed_demo --if-empty
	python manage.py ensure_admin
	@# Ctrl-C: honcho stops every process and kills what is left after 5 s, but the
	@# worker's warm shutdown (it lets a running task finish) takes up to about 6 s on
	@# the embedded broker, so honcho waits up to 15 s. Its exit status 130 then only
	@# says that Ctrl-C stopped it.
	python -c 'import sys, honcho.command, honcho.manager; sys.argv[0] = "honcho"; \
		honcho.manager.KILL_WAIT = 15; sys.exit(honcho.command.main())' \
		--procfile Procfile.dev start || test $$? -eq 130

test: $(VENV)/.installed
	pytest

lint: $(VENV)/.installed
	ruff check .
	ruff format --check .

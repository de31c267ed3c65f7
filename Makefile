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
	python -m devtools.run --procfile Procfile.dev start

test: $(VENV)/.installed
	pytest

lint: $(VENV)/.installed
	ruff check .
	ruff format --check .
	lint-imports

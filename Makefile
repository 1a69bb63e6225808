# musiclab: `make run` (start the app) and `make test` (the whole suite). Debian/Ubuntu + Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-fast venv dev system system-test lint bench clean

run: venv system
	$(BIN)/streamlit run app.py

test: dev system system-test
	$(BIN)/python -m pytest -q -rs

# The unit tier only (no pages, subprocesses or browser): under a minute.
test-fast: dev
	$(BIN)/python -m pytest -q -m "unit and not slow"

venv: $(VENV)/.runtime
$(VENV)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

dev: $(VENV)/.dev
$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# FluidSynth + a GM SoundFont. Without apt-get (or rights) the app still runs with
# pretty_midi's sine synth and says so on the page.
system:
	@if command -v fluidsynth >/dev/null && ls /usr/share/sounds/sf2/*.sf2 >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq fluidsynth fluid-soundfont-gm \
	  || echo "musiclab: could not install FluidSynth; audio falls back to a sine synth"; \
	else echo "musiclab: no apt-get here: install FluidSynth + a GM SoundFont yourself (audio falls back to a sine synth)"; fi

# Debian's chromium for the real-browser tests (Playwright cannot download browsers here) and
# PostgreSQL for the shared vote store's tests (each test starts its own server in a temp dir).
system-test:
	@if [ -x /usr/bin/chromium ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium postgresql; \
	else echo "musiclab: install chromium and postgresql for the tests"; exit 1; fi

lint: dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: venv
	$(BIN)/python -m musiclab bench generate

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# make demo · make test · make lint · each installs what it needs into .venv
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.demo-stamp

.PHONY: install bwrap test test-fast lint demo bench soak format clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

# bubblewrap isolates the emulator's sandbox; installed when missing and we are root
bwrap:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1)) \
	    || echo "warning: could not install bubblewrap; the sandbox runs with rlimits only"; \
	  else echo "warning: bubblewrap (bwrap) not found; the sandbox runs with rlimits only"; fi; }
	@! command -v bwrap >/dev/null 2>&1 || bwrap --ro-bind / / --proc /proc --dev /dev \
	  --unshare-all --die-with-parent true 2>/tmp/qwen-ci-bwrap-check.txt || \
	  echo "warning: bwrap cannot create a sandbox here ($$(cat /tmp/qwen-ci-bwrap-check.txt)): \
	qwen-ci serve will refuse to start; see docs/SECURITY.md (Why bubblewrap fails)"
	@rm -f /tmp/qwen-ci-bwrap-check.txt

install: $(STAMP) bwrap

test: install
	$(PY) -m pytest -q

# the unit layer, about a minute: no kernels, no servers' sandboxes, no side environments
FAST_IGNORE := tests/ecosystem tests/sandbox tests/selfhost tests/emulator tests/reliability \
	tests/benchmarks tests/test_doc_claims.py tests/test_examples.py
test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider $(addprefix --ignore=,$(FAST_IGNORE)) tests

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# the demo needs only the LangChain adapter and the emulator, not the dev toolchain
$(DEMO_STAMP): pyproject.toml | $(PY)
	@[ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ] || \
	  $(PY) -m pip install -q --no-compile --disable-pip-version-check -e '.[langchain,emulator]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP) bwrap
	$(PY) examples/quickstart.py

# the long variant of the emulator soak test (make test runs 40 requests)
soak: install
	SOAK_REQUESTS=500 $(PY) -m pytest -q tests/reliability/test_emulator_soak.py

# benchmark-only dependencies (langchain-openai, llama-index-llms-openai-like, matplotlib)
bench: install
	$(PY) -m pip install -q -r benchmarks/requirements.txt
	$(PY) benchmarks/run.py

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# everything the targets made here: the venv, the side environments of tests/ecosystem (.venvs),
# caches and build metadata (uv's and pip's download caches in ~/.cache are shared, kept)
clean:
	rm -rf $(VENV) .venvs .pytest_cache .mypy_cache .ruff_cache *.egg-info build dist

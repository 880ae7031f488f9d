# Locked dependencies: every package, transitive ones included, pinned with its hashes. pyproject.toml says what
# the service needs (direct pins); `make lock` resolves it into the lock files with uv, and every install
# (make run, make test, the Lambda layer, the agent image) installs from those files with --require-hashes, then
# the project itself without dependencies.
# To update a dependency: change its pin in pyproject.toml, run `make lock`, commit both.
UV_VERSION := 0.13.9
UV_VENV    := .venv-uv
UV         := $(UV_VENV)/bin/uv
# The platforms the locks must install on: this machine's Python (3.11+) and Lambda's python3.12 on x86_64.
UV_COMPILE := $(UV) pip compile --quiet --generate-hashes --universal --python-version 3.11 --no-header

.PHONY: lock

$(UV):
	@test -x $(UV_VENV)/bin/python || $(PYTHON) -m venv $(UV_VENV)
	@$(UV_VENV)/bin/python -m pip install -q --disable-pip-version-check 'uv==$(UV_VERSION)'

## resolve pyproject.toml's pins into the hashed lock files (layers/requirements.txt, requirements/test.lock)
lock: $(UV)
	@mkdir -p requirements
	@$(UV_COMPILE) pyproject.toml --extra server -o layers/requirements.txt
	@$(UV_COMPILE) pyproject.toml --extra server --extra dev --extra clients -o requirements/test.lock
	@echo "locked: layers/requirements.txt (serving: make run, the Lambda layer, the agent image), requirements/test.lock (make test)"

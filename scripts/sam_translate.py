"""Translate template.yaml into the plain CloudFormation that `sam deploy` would submit, offline, with
aws-sam-translator (the one in the SAM virtualenv, .venv-sam: its pins clash with the service's pydantic), and
print it as JSON. The tests read what API Gateway and Lambda will actually get from this, not the SAM source.

Usage: .venv-sam/bin/python scripts/sam_translate.py [TEMPLATE] [Name=Value ...]  (parameter overrides)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parent.parent
# The only parameter without a default; any image URI translates the same.
REQUIRED = {"AgentImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/kilo-bridge-agent:translate"}
# Local code paths become S3 locations at `sam package`; the translator accepts only those.
LOCAL_PATHS = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}


def translate(template_path: Path, overrides: dict[str, str]) -> dict[str, Any]:
    template = yaml_parse(template_path.read_text())
    for resource in template["Resources"].values():
        key = LOCAL_PATHS.get(resource.get("Type"))
        if key and isinstance(resource.get("Properties", {}).get(key), str):
            resource["Properties"][key] = "s3://translate-only/" + resource["Properties"][key].strip("/")
    translator = Translator(None, Parser(), plugins=[], boto_session=boto3.Session(region_name="us-east-1"))
    translated: dict[str, Any] = translator.translate(
        sam_template=template, parameter_values={**REQUIRED, **overrides}, get_managed_policy_map=lambda: {}
    )
    return translated


def main(argv: list[str]) -> int:
    path = ROOT / "template.yaml"
    if argv and "=" not in argv[0]:
        path, argv = Path(argv[0]), argv[1:]
    overrides = dict(arg.split("=", 1) for arg in argv)
    print(json.dumps(translate(path, overrides), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

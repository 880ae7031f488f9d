#!/bin/sh
# Lambda entry point for the streaming routes: the Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap,
# AWS_LWA_INVOKE_MODE=response_stream) proxies each invocation to this uvicorn and streams its answer back.
# The layer's packages live in /opt/python.
export PYTHONPATH="/opt/python:${LAMBDA_TASK_ROOT:-.}:${PYTHONPATH:-}"
exec python -m uvicorn --factory kilo_bridge.web.app:create_app --host 127.0.0.1 --port "${PORT:-8080}" \
  --no-access-log --timeout-graceful-shutdown 5

#!/bin/sh
# Lambda entry point for the streaming routes: the Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap,
# AWS_LWA_INVOKE_MODE=response_stream) proxies each invocation to this uvicorn and streams its answer back.
# The layer's packages live in /opt/python.
export PYTHONPATH="/opt/python:${LAMBDA_TASK_ROOT:-.}:${PYTHONPATH:-}"
# serve.py: uvicorn on 127.0.0.1:$PORT (default 8080), the app imported with the garbage collector off.
exec python "$(dirname "$0")/serve.py"

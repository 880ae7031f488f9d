"""The real openai and anthropic SDKs and the Vercel AI SDK (tests/clients/node) against the stand-in of the AWS
path (tests/fakes/api_gateway_stream.py: API Gateway's routes of the StreamFunction in template.yaml, under the
stage, then the app as the Lambda Web Adapter serves it, with keys required as on Lambda), each configured as
against the local server: a base URL and one key. Plain and streamed answers."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator

import anthropic
import httpx
import openai
import pytest
from anthropic.types import MessageParam, TextBlock
from openai.types.chat import ChatCompletionMessageParam

from kilo_bridge.config import Settings
from tests.fakes.api_gateway_stream import ApiGatewayStreamPath, stream_function_routes
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import ROOT

NODE_DIR = ROOT / "tests" / "clients" / "node"


@pytest.fixture
def aws_path(
    serve: Callable[..., str], make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The API's URL (with the stage) of the stand-in: keys required, the app behind the adapter."""
    monkeypatch.setenv("AWS_LAMBDA_EXEC_WRAPPER", "/opt/bootstrap")
    app_url = serve(make_settings(auth_required=True))
    with ApiGatewayStreamPath(app_url, stream_function_routes(ROOT / "template.yaml")) as gateway:
        yield f"{gateway.url}/prod"


def test_the_stand_in_serves_the_stream_functions_routes_only(aws_path: str, key_factory: Callable[..., str]) -> None:
    body = {"model": "fake/model-a", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{aws_path}/v1/chat/completions", json=body).status_code == 401  # no key: the app refuses
    key = key_factory()
    assert httpx.post(f"{aws_path}/v1/chat/completions", json=body, headers={"x-api-key": key}).status_code == 200
    assert httpx.get(f"{aws_path}/api/kilo/credits", headers={"x-api-key": key}).status_code == 403  # not its route


def test_openai_python_plain_and_streamed_with_one_key(
    aws_path: str, key_factory: Callable[..., str], fake: FakeGatewayThread
) -> None:
    client = openai.OpenAI(base_url=f"{aws_path}/v1", api_key=key_factory(), max_retries=0, timeout=30)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello aws"}]
    answer = client.chat.completions.create(model="fake/model-a", messages=messages)
    assert answer.choices[0].message.content == "Echo: hello aws"
    stream = client.chat.completions.create(model="fake/model-a", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Echo: hello aws"
    with client.responses.stream(model="fake/model-a", input="hello aws") as events:
        assert events.get_final_response().output_text == "Echo: hello aws"
    assert fake.chats[-1]["headers"]["authorization"].startswith("Bearer ")  # the Kilo key upstream, not the client's


def test_anthropic_python_plain_and_streamed_with_one_key(aws_path: str, key_factory: Callable[..., str]) -> None:
    # The Anthropic SDK sends its api_key as x-api-key: the same key, nothing swapped.
    client = anthropic.Anthropic(base_url=aws_path, api_key=key_factory(), max_retries=0, timeout=30)
    messages: list[MessageParam] = [{"role": "user", "content": "hello aws"}]
    answer = client.messages.create(model="fake/model-a", max_tokens=64, messages=messages)
    block = answer.content[0]
    assert isinstance(block, TextBlock) and block.text == "Echo: hello aws"
    with client.messages.stream(model="fake/model-a", max_tokens=64, messages=messages) as stream:
        assert "".join(stream.text_stream) == "Echo: hello aws"


@pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir(),
    reason="node clients not installed (make install runs npm ci in tests/clients/node)",
)
@pytest.mark.parametrize("case", ["openai-chat", "openai-chat-stream", "ai-chat-stream", "ai-default-stream"])
def test_node_clients_with_one_key(aws_path: str, key_factory: Callable[..., str], case: str) -> None:
    proc = subprocess.run(
        ["node", str(NODE_DIR / "run.mjs"), aws_path, case, key_factory()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result.get("text") == "Echo: hello node", result

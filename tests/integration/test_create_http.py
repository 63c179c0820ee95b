"""Creating models on a real server: `/api/blobs` uploads, `/api/create` in both of Ollama's
forms, the created model answering with its SYSTEM prompt, refused digests, and the `create`,
`show`, `cp` and `rm` commands."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from agentport.cli import models as model_commands
from agentport.errors import ApiError
from agentport.store.modelfile import parse_modelfile
from agentport.store.models import file_sha256

SYSTEM = "You are a pirate. Answer every question like a pirate would."
runner = CliRunner()


@pytest.fixture(scope="module")
def gguf_digest(gguf: Path) -> str:
    return file_sha256(gguf)


@pytest.fixture
def cleanup(api: httpx.Client) -> Iterator[list[str]]:
    """Names to delete after the test: the session's server is shared."""
    names: list[str] = []
    yield names
    for name in names:
        api.request("DELETE", "/api/delete", json={"model": name})


def blobs_dir(server) -> Path:
    return server.home / "models" / "blobs"


def ndjson(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def chat(api: httpx.Client, model: str, messages: list[dict]) -> dict:
    body = {
        "model": model,
        "messages": messages,
        "stream": False,
        "options": {"temperature": 0, "num_predict": 4},
    }
    response = api.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    return response.json()


# --- /api/blobs ------------------------------------------------------------------------------


def test_blob_upload_with_the_right_and_a_wrong_digest(api, server):
    data = b"GGUF not really, but a blob all the same " * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = f"/api/blobs/{digest}"
    if api.head(path).status_code == 200:  # left by an earlier run of this session
        (blobs_dir(server) / digest.replace(":", "-")).unlink()
    assert api.head(path).status_code == 404
    assert api.post(path, content=data).status_code == 201
    assert api.head(path).status_code == 200
    assert (blobs_dir(server) / digest.replace(":", "-")).read_bytes() == data
    assert api.post(path, content=data).status_code == 200  # already there

    wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    response = api.post(f"/api/blobs/{wrong}", content=data)
    assert response.status_code == 400
    assert "digest mismatch" in response.json()["error"]
    assert api.head(f"/api/blobs/{wrong}").status_code == 404
    assert not list(blobs_dir(server).glob(".partial*"))
    (blobs_dir(server) / digest.replace(":", "-")).unlink()


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:..%2F..%2F..%2Fconfig",
        "..%2F..%2Fmanifests",
        "sha256-" + "0" * 63,
        "sha256:" + "0" * 64 + "%2F..%2F..%2Fescape",
        "sha256:" + "G" * 64,
        "md5:" + "0" * 32,
    ],
)
def test_digests_that_could_escape_the_store_are_refused(api, server, digest):
    assert api.head(f"/api/blobs/{digest}").status_code == 400
    response = api.post(f"/api/blobs/{digest}", content=b"data")
    assert response.status_code == 400
    assert "invalid digest" in response.json()["error"]
    assert not (server.home / "escape").exists()
    assert not (server.home / "models" / "escape").exists()


# --- /api/create -----------------------------------------------------------------------------


def test_create_from_an_uploaded_blob_applies_its_system_prompt(api, gguf_digest, cleanup):
    assert api.head(f"/api/blobs/{gguf_digest}").status_code == 200  # the embedded model's
    cleanup.append("pirate:latest")
    body = {
        "model": "pirate",
        "files": {"smollm2.gguf": gguf_digest},
        "system": SYSTEM,
        "parameters": {"temperature": 0.3, "stop": ["<|im_end|>"]},
    }
    response = api.post("/api/create", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    statuses = [line["status"] for line in ndjson(response)]
    assert statuses[:2] == ["parsing modelfile", f"using existing layer {gguf_digest}"]
    assert all(s.startswith(("using existing layer", "creating new layer")) for s in statuses[2:-2])
    assert statuses[-2:] == ["writing manifest", "success"]
    assert "pirate:latest" in [m["name"] for m in api.get("/api/tags").json()["models"]]

    question = {"role": "user", "content": "Where is the treasure?"}
    created = chat(api, "pirate", [question])
    base = chat(api, "smollm2:135m", [{"role": "system", "content": SYSTEM}, question])
    assert created["message"]["role"] == "assistant"
    # The same prompt, token for token: the model's SYSTEM stands in for the request's.
    # (prompt_eval_count counts only tokens evaluated, so it depends on the prefix cache.)
    count = "/v1/messages/count_tokens"
    own = api.post(count, json={"model": "pirate", "messages": [question]}).json()
    given = {"model": "smollm2:135m", "system": SYSTEM, "messages": [question]}
    assert own["input_tokens"] == api.post(count, json=given).json()["input_tokens"]
    assert created["message"]["content"] == base["message"]["content"]


def test_create_from_a_modelfile_naming_an_uploaded_blob(api, server, gguf_digest, cleanup):
    cleanup.append("terse:v1")
    modelfile = f'FROM @{gguf_digest}\nSYSTEM "Answer in one word."\nPARAMETER num_predict 8\n'
    body = {"name": "terse:v1", "modelfile": modelfile, "stream": False}
    response = api.post("/api/create", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "success"}
    manifest = server.home / "models/manifests/registry.ollama.ai/library/terse/v1"
    layers = {x["mediaType"]: x for x in json.loads(manifest.read_text())["layers"]}
    assert layers["application/vnd.ollama.image.model"]["digest"] == gguf_digest
    system = layers["application/vnd.ollama.image.system"]["digest"].replace(":", "-")
    assert (blobs_dir(server) / system).read_text() == "Answer in one word."
    tags = {m["name"]: m for m in api.get("/api/tags").json()["models"]}
    assert tags["terse:v1"]["details"]["family"] == "llama"
    assert tags["terse:v1"]["details"]["quantization_level"] == "Q4_1"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "x", "from": "ghost:1b"}, 404, "ghost:1b"),
        ({"model": "x", "modelfile": "FROM smollm2:135m\nADAPTER ./a.gguf"}, 400, "ADAPTER"),
        ({"model": "x", "from": "smollm2:135m", "adapters": {"a": "b"}}, 400, "ADAPTER"),
        ({"model": "x", "modelfile": "FROM ./rel.gguf"}, 400, "not a file this server imports"),
        ({"model": "x", "modelfile": "FROM m\nBOGUS 1"}, 400, "line 2"),
        ({"model": "x", "files": {"a.gguf": "sha256:" + "0" * 64}}, 400, "upload it first"),
        ({"model": "x", "files": {"a.gguf": "sha256:../../x"}}, 400, "invalid digest"),
        ({"model": "../../x", "from": "smollm2:135m"}, 400, "invalid model name"),
        ({"model": "x", "from": "smollm2:135m", "quantize": "q4_K_M"}, 400, "quantize"),
        ({"model": "x", "from": "smollm2:135m", "parameters": {"num_gpus": 1}}, 400, "num_gpus"),
        ({"from": "smollm2:135m"}, 400, "model is required"),
    ],
)
def test_bad_creates_are_refused_with_a_status(api, body, status, message):
    response = api.post("/api/create", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert "x:latest" not in [m["name"] for m in api.get("/api/tags").json()["models"]]


def test_paths_on_the_server_are_refused_alike(api, gguf):
    """No import folder is set: FROM reads no path, and the error does not tell whether one
    exists (the model file itself, a secret, nothing, a folder)."""
    errors = []
    for source in (str(gguf), "/etc/shadow", "/no/such/file.gguf", "/etc/"):
        response = api.post("/api/create", json={"model": "x", "from": source})
        assert response.status_code == 400, response.text
        errors.append(response.json()["error"].replace(source, "<path>"))
    assert len(set(errors)) == 1 and "not a file this server imports" in errors[0]


# --- the commands ----------------------------------------------------------------------------


@pytest.fixture
def cli(server, monkeypatch) -> typer.Typer:
    monkeypatch.setenv("AGENTPORT_HOST", server.url.removeprefix("http://"))
    app = typer.Typer()
    app.command("create")(model_commands.create_command)
    app.command("show")(model_commands.show_command)
    app.command("cp")(model_commands.cp_command)
    app.command("rm")(model_commands.rm_command)
    return app


def test_create_show_cp_rm_commands(cli, api, gguf, tmp_path, cleanup):
    cleanup += ["me/cli-model:latest", "me/cli-copy:latest", "me/cli-raw:latest"]
    (tmp_path / "weights.gguf").symlink_to(gguf)
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text('FROM ./weights.gguf\nSYSTEM """Be\nbrief."""\nPARAMETER top_k 7\n')

    result = runner.invoke(cli, ["create", "me/cli-model", "-f", str(modelfile)])
    assert result.exit_code == 0, result.output
    assert "success" in result.output

    result = runner.invoke(cli, ["show", "me/cli-model"])
    assert result.exit_code == 0, result.output
    for text in ("Model", "architecture", "llama", "Capabilities", "System", "brief.", "top_k"):
        assert text in result.output

    result = runner.invoke(cli, ["show", "me/cli-model", "--modelfile"])
    assert result.exit_code == 0, result.output
    assert parse_modelfile(result.output).system == "Be\nbrief."

    assert runner.invoke(cli, ["cp", "me/cli-model", "me/cli-copy"]).exit_code == 0
    result = runner.invoke(cli, ["create", "me/cli-raw", "--from", str(gguf)])
    assert result.exit_code == 0, result.output

    names = ["me/cli-model", "me/cli-copy", "me/cli-raw"]
    result = runner.invoke(cli, ["rm", *names])
    assert result.exit_code == 0, result.output
    left = [m["name"] for m in api.get("/api/tags").json()["models"]]
    assert not [name for name in left if name.startswith("me/cli-")]
    assert "smollm2:135m" in left


def test_command_errors_are_one_line(cli, tmp_path):
    bad = tmp_path / "Modelfile"
    bad.write_text("FROM ./x.gguf\nADAPTER ./lora.gguf\n")
    result = runner.invoke(cli, ["create", "nope", "-f", str(bad)])
    assert result.exit_code == 1
    assert "line 2: ADAPTER is not supported" in result.output
    result = runner.invoke(cli, ["rm", "ghost:1b"])
    assert result.exit_code == 1
    assert "ghost:1b" in result.output


def test_progress_lines_print_and_an_error_line_raises(capsys):
    lines = [
        '{"status": "parsing modelfile"}',
        '{"status": "copying model data", "total": 100, "completed": 50}',
        "",
        '{"status": "success"}',
    ]
    model_commands.follow_progress(lines)
    printed = capsys.readouterr().err
    assert "parsing modelfile" in printed and "success" in printed
    with pytest.raises(ApiError, match="disk full"):
        model_commands.follow_progress(['{"status": "writing manifest"}', '{"error": "disk full"}'])

"""The runner image: built for the stack's architecture, slim, with a build context that holds
only what the Dockerfile copies; push-runner-image.sh --dry-run prints what it would run."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.deploy.cfn import ROOT, source

SCRIPT = ROOT / "scripts" / "push-runner-image.sh"
DOCKERFILE = ROOT / "runner" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@pytest.fixture
def no_tools(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A PATH whose `aws` and `docker` only record that they were called."""
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("aws", "docker"):
        path = bin_dir / tool
        path.write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {calls}\nexit 1\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("AWS_REGION", None)
    env.pop("AWS_DEFAULT_REGION", None)
    return env, calls


def push(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60, check=False)


def test_dry_run_prints_the_commands_and_runs_none(no_tools: tuple[dict[str, str], Path]
                                                   ) -> None:
    env, calls = no_tools
    done = push(env, "--dry-run", "--region", "eu-west-1", "--account", "123456789012",
                "--tag", "v1")
    assert done.returncode == 0, done.stderr
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert done.stdout.splitlines() == [
        "+ aws ecr describe-repositories --region eu-west-1 --repository-names aef-runner"
        " || aws ecr create-repository --region eu-west-1 --repository-name aef-runner"
        " --image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true",
        "+ aws ecr get-login-password --region eu-west-1 | docker login --username AWS"
        f" --password-stdin {registry}",
        "+ docker buildx build --platform linux/arm64 --provenance=false --file"
        f" runner/Dockerfile --tag {registry}/aef-runner:v1 --push .",
        f"{registry}/aef-runner:v1",
    ]
    assert not calls.exists()  # neither aws nor docker was run


@pytest.mark.parametrize(("arch", "platform"), [("arm64", "linux/arm64"),
                                                ("ARM64", "linux/arm64"),
                                                ("x86_64", "linux/amd64"),
                                                ("X86_64", "linux/amd64")])
def test_the_platform_follows_the_architecture_never_the_build_machine(
        no_tools: tuple[dict[str, str], Path], arch: str, platform: str) -> None:
    env, _ = no_tools
    done = push(env, "--dry-run", "--region", "us-east-1", "--arch", arch)
    assert done.returncode == 0, done.stderr
    assert f"--platform {platform} " in done.stdout
    uri = done.stdout.splitlines()[-1]
    assert re.fullmatch(r"ACCOUNT_ID\.dkr\.ecr\.us-east-1\.amazonaws\.com/aef-runner:"
                        r"[0-9a-z_-]+", uri), uri
    assert source()["Parameters"]["RunnerArchitecture"]["Default"] == "ARM64"


@pytest.mark.parametrize("args", [["--dry-run", "--arch", "sparc", "--region", "x"],
                                  ["--dry-run"], ["--dry-run", "--region", "x", "--bogus"]])
def test_bad_arguments_are_refused(no_tools: tuple[dict[str, str], Path],
                                   args: list[str]) -> None:
    env, calls = no_tools
    done = push(env, *args)
    assert done.returncode == 2 and done.stderr.startswith("push-runner-image:")
    assert not calls.exists()


def test_the_image_is_slim_precompiled_and_matches_the_tested_playwright() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim-bookworm$", text, re.M)
    assert "mcr.microsoft.com/playwright" not in text  # Chromium, Firefox, WebKit, ffmpeg
    assert "playwright install" not in text and "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1" in text
    assert re.search(r"apt-get install -y --no-install-recommends chromium", text)
    assert "compileall" in text
    pinned = re.search(r"^ARG PLAYWRIGHT_VERSION=(\S+)$", text, re.M)
    assert pinned and pinned.group(1) == version("playwright")
    assert re.search(r"^USER runner$", text, re.M)


def test_the_build_context_is_an_allowlist_of_what_the_dockerfile_copies() -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # .venv, .git, .aef, node_modules, tests: all out
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = re.findall(r"^COPY (\S+) ", DOCKERFILE.read_text(), re.M)
    assert copied and {c.rstrip("/") for c in copied} == allowed
    for path in allowed:
        assert (ROOT / path).exists(), path

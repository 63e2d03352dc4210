"""Every file in examples/ runs as a user would run it: a fresh process in an empty folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
LOCAL_EXAMPLES = [
    "quickstart.py",
    "cache_none.py",
    "cache_write_through.py",
    "cache_write_back.py",
    "update_json_contention.py",
]
AZURE_EXAMPLES = ["azure_quickstart.py", "local_to_azure.py"]


ORIGINAL = REPO / "tests" / "original_readme"


def checkout_env() -> dict[str, str]:
    """The environment without Azure settings, importing this checkout's package.

    An installed copy elsewhere (an editable install of another worktree) must not be the
    one under test.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_example(
    name: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    folder: Path = EXAMPLES,
    *,
    ok: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run an example; ``ok``: it must succeed (else it must fail)."""
    full_env = checkout_env()
    full_env.update(env or {})
    result = subprocess.run(
        [PYTHON, str(folder / name)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode == 0) == ok, f"{name}:\n{result.stdout}\n{result.stderr}"
    return result


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(LOCAL_EXAMPLES + AZURE_EXAMPLES)


def test_quickstart(tmp_path: Path) -> None:
    out = run_example("quickstart.py", tmp_path).stdout
    lines = out.splitlines()
    assert lines[0].startswith("Loaded config: {'learning_rate': 0.01, 'layers': [64, 128, 256]")
    assert "'created_at': datetime.datetime(" in lines[0]
    assert lines[1] == "Loaded model: {'weights': [0.1, 0.2, 0.3], 'bias': 0.5}"
    assert lines[2] == "Keys: ['demo/config', 'demo/model.bin']"
    assert lines[3] == "Config deleted successfully."
    folder = tmp_path / "local_blob_storage" / "demo_container"
    assert (folder / "demo" / "model.bin").is_file()
    # The command line sees what the example left, as the README says.
    result = subprocess.run(
        [PYTHON, "-m", "asyncblobdict", "ls"],
        cwd=tmp_path,
        env=checkout_env(),
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stdout) == (0, "demo/model.bin\n")
    # And the example runs again in the same folder.
    run_example("quickstart.py", tmp_path)


def _leaves_nothing(folder: Path) -> None:
    assert list(folder.iterdir()) == [], "the example left files in the current folder"


def test_cache_none(tmp_path: Path) -> None:
    out = run_example("cache_none.py", tmp_path).stdout
    assert "reader sees after the change: {'theme': 'light'}" in out
    _leaves_nothing(tmp_path)


def test_cache_write_through(tmp_path: Path) -> None:
    out = run_example("cache_write_through.py", tmp_path).stdout
    assert "b's cache still says: 1" in out
    assert "b's stale write was refused:" in out
    assert "storage holds: 2" in out
    assert "b increments with update_json: 3" in out
    _leaves_nothing(tmp_path)


def test_cache_write_back(tmp_path: Path) -> None:
    result = run_example("cache_write_back.py", tmp_path)
    out = result.stdout
    assert "dirty before sync: ['a', 'b']" in out
    assert "in storage before sync: []" in out
    assert "sync() -> SyncResult(written=['a', 'b'], deleted=[], skipped=[])" in out
    assert 'sync("raise") wrote nothing' in out
    assert "sync(\"skip\") -> SyncResult(written=[], deleted=['b'], skipped=['a'])" in out
    assert "storage keeps the other writer's a: {'n': 99}" in out
    assert "sync(\"overwrite\") -> SyncResult(written=['a'], deleted=[], skipped=[])" in out
    assert "storage now: {'n': 10} ['a']" in out
    assert "log: WARNING" in result.stderr  # the skipped conflict is logged, not printed
    _leaves_nothing(tmp_path)


def test_update_json_contention(tmp_path: Path) -> None:
    out = run_example("update_json_contention.py", tmp_path).stdout
    assert "8 workers x 25 increments: final count 200" in out
    assert "no update was lost" in out
    _leaves_nothing(tmp_path)


# -------------------------------------------------------------------------------- azure


@pytest.fixture
def azurite_conn_str(azurite: Any) -> str:
    """Connection string of the session's Azurite (skips when it cannot run)."""
    return str(azurite.connection_string)


PLACEHOLDER = (
    "DefaultEndpointsProtocol=https;AccountName=<account>;AccountKey=<key>;"
    "EndpointSuffix=core.windows.net"
)


@pytest.mark.parametrize(
    ("name", "env", "message"),
    [
        (
            "azure_quickstart.py",
            {},
            "Set AZURE_CONN_STR and AZURE_CONTAINER (in the environment or in a .env file)",
        ),
        ("azure_quickstart.py", {"AZURE_CONTAINER": "c"}, "Set AZURE_CONN_STR (in the"),
        ("azure_quickstart.py", {"AZURE_CONN_STR": " ", "AZURE_CONTAINER": "c"}, "Set AZURE_CO"),
        (
            "azure_quickstart.py",
            {"AZURE_CONN_STR": "UseDevelopmentStorage=true"},
            "Set AZURE_CONTAINER (in the",
        ),
        (
            "azure_quickstart.py",
            {"AZURE_CONN_STR": PLACEHOLDER, "AZURE_CONTAINER": "c"},
            "AZURE_CONN_STR is a placeholder: fill in its <...> parts",
        ),
        (
            "local_to_azure.py",
            {"AZURE_CONN_STR": PLACEHOLDER},
            "AZURE_CONN_STR is a placeholder: fill in its <...> parts",
        ),
    ],
)
def test_azure_examples_say_what_to_set(
    tmp_path: Path, name: str, env: dict[str, str], message: str
) -> None:
    # No Azure needed: the settings are checked before anything is sent.
    result = run_example(name, tmp_path, env, ok=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    _leaves_nothing(tmp_path)


@pytest.mark.azure
def test_azure_quickstart(tmp_path: Path, azurite_conn_str: str) -> None:
    env = {"AZURE_CONN_STR": azurite_conn_str, "AZURE_CONTAINER": "ex-" + uuid.uuid4().hex[:12]}
    out = run_example("azure_quickstart.py", tmp_path, env).stdout
    assert out.startswith("{'created_at': datetime.datetime(")
    _leaves_nothing(tmp_path)


def test_original_readme_local_example_runs_unchanged(tmp_path: Path) -> None:
    out = run_example("local_example.py", tmp_path, folder=ORIGINAL).stdout
    lines = out.splitlines()
    assert lines[0].startswith("Loaded config: {'learning_rate': 0.01, 'layers': [64, 128, 256]")
    assert lines[1:] == [
        "Loaded model: {'weights': [0.1, 0.2, 0.3], 'bias': 0.5}",
        "Keys: ['demo/config', 'demo/model.bin']",
        "Config deleted successfully.",
    ]


@pytest.mark.azure
def test_original_readme_azure_example_runs_unchanged(
    tmp_path: Path, azurite_conn_str: str
) -> None:
    # Byte for byte the original's code, including its `from dotenv import load_dotenv`;
    # the settings come from the environment, as the original README says.
    env = {"AZURE_CONN_STR": azurite_conn_str, "AZURE_CONTAINER": "ex-" + uuid.uuid4().hex[:12]}
    out = run_example("azure_example.py", tmp_path, env, folder=ORIGINAL).stdout
    assert out.startswith("{'created_at': datetime.datetime(")


@pytest.mark.azure
def test_azure_quickstart_reads_a_dotenv_file_when_python_dotenv_is_installed(
    tmp_path: Path, azurite_conn_str: str
) -> None:
    container = "ex-" + uuid.uuid4().hex[:12]
    (tmp_path / ".env").write_text(
        f'AZURE_CONN_STR="{azurite_conn_str}"\nAZURE_CONTAINER={container}\n'
    )
    # load_dotenv() looks for .env next to the script, so run a copy that sits in the project.
    shutil.copy(EXAMPLES / "azure_quickstart.py", tmp_path / "azure_quickstart.py")
    out = run_example("azure_quickstart.py", tmp_path, folder=tmp_path).stdout
    assert out.startswith("{'created_at': datetime.datetime(")


@pytest.mark.azure
def test_local_to_azure(tmp_path: Path, azurite_conn_str: str) -> None:
    container = "ex-" + uuid.uuid4().hex[:12]
    env = {"AZURE_CONN_STR": azurite_conn_str, "AZURE_CONTAINER": container}
    out = run_example("local_to_azure.py", tmp_path, env).stdout
    lines = out.splitlines()
    assert lines[0] == "copied 3, skipped 0 unchanged"
    assert lines[1] == "copied 0, skipped 3 unchanged"
    assert f"in Azure container {container!r}: " in lines[2]
    assert "'runs/1/model.bin'" in lines[2]
    assert lines[3].startswith("config read back: {'lr': 0.01")
    _leaves_nothing(tmp_path)
    # The command line sees the copied keys.
    result = subprocess.run(
        [PYTHON, "-m", "asyncblobdict", "--azure", "--container", container, "ls"],
        cwd=tmp_path,
        env={**checkout_env(), "AZURE_CONN_STR": azurite_conn_str},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["runs/1/config", "runs/1/metrics", "runs/1/model.bin"]

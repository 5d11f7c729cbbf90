"""Where tokens come from: a tokens file (CSV or JSON), then per-location and shared variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from engine import ConfigError, load_tokens

SECRET = "pit-4f1c2b-SECRET"


def tokens_file(tmp_path: Path, text: str, *, name: str = "tokens.csv", mode: int = 0o600) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return str(path)


def test_csv_with_header(tmp_path: Path) -> None:
    """A CSV tokens file with a ``location_id,token`` header maps each location to its token."""
    path = tokens_file(tmp_path, "location_id,token\nloc1,tok1\n loc2 , tok2 \n")

    lookup = load_tokens(path, environ={})

    assert (lookup("loc1"), lookup("loc2"), lookup("loc3")) == ("tok1", "tok2", None)


def test_csv_without_header(tmp_path: Path) -> None:
    """A CSV tokens file may start straight with data rows; blank lines are skipped."""
    path = tokens_file(tmp_path, "loc1,tok1\n\nloc2,tok2\n")

    lookup = load_tokens(path, environ={})

    assert (lookup("loc1"), lookup("loc2")) == ("tok1", "tok2")


def test_csv_header_in_any_case_with_bom(tmp_path: Path) -> None:
    """The header is recognised in any case, after a byte order mark."""
    path = tmp_path / "tokens.csv"
    path.write_bytes("\ufeffLocation_ID,Token\nloc1,tok1\n".encode())
    path.chmod(0o600)

    assert load_tokens(str(path), environ={})("loc1") == "tok1"


def test_json_object(tmp_path: Path) -> None:
    """A JSON tokens file is an object from location id to token."""
    path = tokens_file(tmp_path, '{"loc1": "tok1", "loc2": " tok2 "}', name="tokens.json")

    lookup = load_tokens(path, environ={})

    assert (lookup("loc1"), lookup("loc2")) == ("tok1", "tok2")


def test_per_location_variable_then_shared_variable() -> None:
    """Without a file, ``GHL_TOKEN_<LOC>`` is used first and ``GHL_TOKEN`` for the rest."""
    lookup = load_tokens(environ={"GHL_TOKEN_loc1": "own", "GHL_TOKEN": "shared"})

    assert lookup("loc1") == "own"
    assert lookup("loc2") == "shared"


def test_no_token_anywhere_is_none() -> None:
    """A location with no file entry and no variable has no token."""
    assert load_tokens(environ={})("loc1") is None


def test_empty_variable_does_not_count() -> None:
    """An empty ``GHL_TOKEN_<LOC>`` falls through to the shared variable."""
    lookup = load_tokens(environ={"GHL_TOKEN_loc1": "", "GHL_TOKEN": "shared"})

    assert lookup("loc1") == "shared"


def test_file_wins_over_environment(tmp_path: Path) -> None:
    """The tokens file comes first; variables fill in locations it does not list."""
    path = tokens_file(tmp_path, "loc1,from-file\n")
    env = {"GHL_TOKEN_loc1": "from-env", "GHL_TOKEN_loc2": "env2", "GHL_TOKEN": "shared"}

    lookup = load_tokens(path, environ=env)

    assert (lookup("loc1"), lookup("loc2"), lookup("loc3")) == ("from-file", "env2", "shared")


def test_custom_prefix() -> None:
    """The variable prefix can be changed."""
    lookup = load_tokens(environ={"MY_loc1": "a", "GHL_TOKEN": "ignored"}, prefix="MY")

    assert (lookup("loc1"), lookup("loc2")) == ("a", None)


@pytest.mark.parametrize(
    "text",
    [
        f"loc1,{SECRET},extra\n",
        f"loc1\n{SECRET}\n",
        f",{SECRET}\n",
        f"location_id,token\nloc1,{SECRET}\nloc2,{SECRET},x\n",
    ],
    ids=["three-columns", "one-column", "no-location", "bad-second-row"],
)
def test_malformed_csv_never_echoes_the_token(tmp_path: Path, text: str) -> None:
    """A malformed CSV tokens file is a ConfigError naming the line, without the token."""
    path = tokens_file(tmp_path, text)

    with pytest.raises(ConfigError, match="expected two columns") as info:
        load_tokens(path, environ={})

    assert SECRET not in str(info.value)
    assert path in str(info.value)


@pytest.mark.parametrize(
    "text",
    [f'{{"loc1": "{SECRET}",', f'{{"loc1": ["{SECRET}"]}}', f'{{"loc1": "{SECRET}", "loc2": 5}}'],
    ids=["broken", "list-value", "number-value"],
)
def test_malformed_json_never_echoes_the_token(tmp_path: Path, text: str) -> None:
    """A malformed JSON tokens file is a ConfigError without the token in its message."""
    path = tokens_file(tmp_path, text, name="tokens.json")

    with pytest.raises(ConfigError) as info:
        load_tokens(path, environ={})

    assert SECRET not in str(info.value)
    assert path in str(info.value)


def test_json_that_is_not_an_object_is_a_config_error(tmp_path: Path) -> None:
    """A JSON tokens file must be an object; a list is a ConfigError without the tokens."""
    path = tokens_file(tmp_path, f'["loc1", "{SECRET}"]', name="tokens.json")

    with pytest.raises(ConfigError) as info:
        load_tokens(path, environ={})

    assert SECRET not in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A tokens file that does not exist is a ConfigError naming it."""
    path = str(tmp_path / "nope.csv")

    with pytest.raises(ConfigError, match=r"nope\.csv"):
        load_tokens(path, environ={})


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_warns_when_others_can_read_the_file(tmp_path: Path, mode: int) -> None:
    """A tokens file readable by group or world logs a warning naming the file."""
    path = tokens_file(tmp_path, "loc1,tok1\n", mode=mode)

    with capture_logs() as logs:
        load_tokens(path, environ={})

    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["path"] == path
    assert "chmod 600" in warnings[0]["event"]
    assert "tok1" not in repr(logs)


def test_no_warning_for_owner_only_file(tmp_path: Path) -> None:
    """A tokens file only its owner can read logs nothing."""
    path = tokens_file(tmp_path, "loc1,tok1\n", mode=0o600)

    with capture_logs() as logs:
        load_tokens(path, environ={})

    assert logs == []


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("tokens.csv", ""),
        ("tokens.csv", "\n \n"),
        ("tokens.csv", "location_id,token\n"),
        ("tokens.json", "{}"),
    ],
    ids=["zero-bytes", "blank-lines", "header-only", "empty-object"],
)
def test_file_without_tokens_is_a_config_error(tmp_path: Path, name: str, text: str) -> None:
    """A tokens file that holds no token is a ConfigError naming it: given on purpose, an
    empty one is a mistake that would otherwise fail every location."""
    path = tokens_file(tmp_path, text, name=name)

    with pytest.raises(ConfigError, match="no tokens") as info:
        load_tokens(path, environ={})

    assert path in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        f"location_id,token\nloc1,{SECRET}\n".encode("utf-16"),
        f"loc1,{SECRET}\n".encode("utf-16-be"),
        f"loc1,caf\xe9-{SECRET}\n".encode("latin-1"),
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
    ],
    ids=["utf-16-bom", "utf-16-no-bom", "latin-1", "binary"],
)
def test_file_that_is_not_utf8_text_is_a_config_error(tmp_path: Path, data: bytes) -> None:
    """A tokens file that is UTF-16, another encoding or binary is a ConfigError that says
    to save it as UTF-8 (not a UnicodeDecodeError), without the token in its message."""
    path = tmp_path / "tokens.csv"
    path.write_bytes(data)

    with pytest.raises(ConfigError, match="UTF-8") as info:
        load_tokens(str(path), environ={})

    assert str(path) in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(("separator", "name"), [(";", "semicolon"), ("\t", "tab")])
def test_csv_with_another_separator_says_so(tmp_path: Path, separator: str, name: str) -> None:
    """A semicolon- or tab-separated tokens file gets a hint to save it comma-separated."""
    path = tokens_file(tmp_path, f"location_id{separator}token\nloc1{separator}{SECRET}\n")

    with pytest.raises(ConfigError, match=f"{name}-separated") as info:
        load_tokens(path, environ={})

    assert SECRET not in str(info.value)


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    """A folder given as the tokens file is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="directory") as info:
        load_tokens(str(tmp_path), environ={})

    assert str(tmp_path) in str(info.value)

"""Size, age and files-from filters, and how they combine with include/exclude."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3sync.errors import ConfigError
from s3sync.local.keys import KeyFilter
from s3sync.model import ObjectMeta
from s3sync.sync.filters import (
    ObjectFilter,
    Selection,
    parse_duration,
    parse_size,
    read_files_from,
)

NOW = 1_700_000_000.0
MIB = 1024 * 1024


def meta(key: str = "k", size: int = 10, age: float = 0.0) -> ObjectMeta:
    return ObjectMeta(key=key, size=size, etag="e", last_modified=NOW - age)


def at_now() -> float:
    return NOW


class TestParsing:
    """Flag values parse like rclone's; a bad value names its flag."""

    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("30s", 30),
            ("15m", 900),
            ("2h", 7200),
            ("7d", 7 * 86400),
            ("1w", 7 * 86400),
            ("1h30m", 5400),
            ("1.5h", 5400),
            ("500ms", 0.5),
            ("90", 90),
            (45, 45),
            (" 2H ", 7200),
        ],
    )
    def test_durations(self, text: str | int, seconds: float) -> None:
        assert parse_duration(text, "--min-age") == pytest.approx(seconds)

    @pytest.mark.parametrize("text", ["", "soon", "2y", "-1h", "h", "1h-5m", "1,5h"])
    def test_bad_durations_name_the_flag(self, text: str) -> None:
        with pytest.raises(ConfigError, match=r"^--max-age: "):
            parse_duration(text, "--max-age")

    def test_sizes_use_1024(self) -> None:
        assert parse_size("1K", "--min-size") == 1024
        assert parse_size("10M", "--max-size") == 10 * MIB

    def test_bad_size_names_the_flag(self) -> None:
        with pytest.raises(ConfigError, match=r"^--min-size: 'ten' is not a size"):
            ObjectFilter.from_options(min_size="ten")

    def test_empty_values_mean_unset(self) -> None:
        """An empty TOML string or env var switches a filter off instead of failing."""
        f = ObjectFilter.from_options(min_size="", max_age="", files_from="")
        assert not f.active

    def test_contradictory_bounds_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="--min-size"):
            ObjectFilter.from_options(min_size="2M", max_size="1M")
        with pytest.raises(ConfigError, match="--min-age"):
            ObjectFilter.from_options(min_age="2d", max_age="1d")


class TestFilesFrom:
    """One key per line; only the line ending is stripped."""

    def test_lines_comments_crlf_and_spaces(self, tmp_path: Path) -> None:
        p = tmp_path / "keys.txt"
        p.write_bytes(b"a/b.txt\r\n\n# a comment\n  spaced key \nlast\xc3\xa9")
        assert read_files_from(p) == frozenset({"a/b.txt", "  spaced key ", "last\u00e9"})

    def test_missing_file_names_the_flag(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"^--files-from: cannot read .*nope"):
            ObjectFilter.from_options(files_from=tmp_path / "nope")

    def test_invalid_utf8_names_line(self, tmp_path: Path) -> None:
        p = tmp_path / "keys.txt"
        p.write_bytes(b"ok\n\xff\xfe\n")
        with pytest.raises(ConfigError, match="line 2 is not valid UTF-8"):
            read_files_from(p)

    def test_only_listed_keys_are_in_scope(self, tmp_path: Path) -> None:
        p = tmp_path / "keys.txt"
        p.write_text("keep/one\nkeep/two\n")
        sel = Selection(KeyFilter(), ObjectFilter.from_options(files_from=p))
        assert sel.filter_keys(["keep/one", "keep/three", "keep/two", "other"]) == ["keep/one", "keep/two"]


class TestObjectFilter:
    """Bounds are inclusive; age is measured from LastModified against the injected clock."""

    def test_no_filter_wants_everything(self) -> None:
        f = ObjectFilter(clock=at_now)
        assert not f.active
        assert f.rejects(meta(size=0, age=1e9)) is None

    @pytest.mark.parametrize(
        ("size", "ok"), [(MIB - 1, False), (MIB, True), (2 * MIB, True), (2 * MIB + 1, False)]
    )
    def test_size_window(self, size: int, ok: bool) -> None:
        f = ObjectFilter.from_options(min_size="1M", max_size="2M")
        assert (f.rejects(meta(size=size)) is None) is ok

    @pytest.mark.parametrize(
        ("age", "ok"), [(59, False), (60, True), (3600, True), (86400, True), (86401, False)]
    )
    def test_age_window(self, age: float, ok: bool) -> None:
        f = ObjectFilter.from_options(min_age="1m", max_age="1d", clock=at_now)
        assert (f.rejects(meta(age=age)) is None) is ok

    def test_reasons_name_the_flag(self) -> None:
        f = ObjectFilter.from_options(max_size="1K", min_age="1h", clock=at_now)
        assert "--max-size" in (f.rejects(meta(size=4096, age=7200)) or "")
        assert "--min-age" in (f.rejects(meta(size=1, age=5)) or "")

    def test_explicit_now_wins_over_clock(self) -> None:
        """One reconcile pass can judge every key against the same instant."""
        f = ObjectFilter.from_options(max_age="1h", clock=at_now)
        assert f.rejects(meta(age=0), now=NOW + 7200) is not None


class TestSelection:
    """Include/exclude, files-from and size/age combine; a filtered key is never a delete."""

    def test_globs_and_files_from_both_apply(self, tmp_path: Path) -> None:
        p = tmp_path / "keys.txt"
        p.write_text("logs/a.log\nlogs/b.tmp\ndata/c\n")
        sel = Selection(KeyFilter(prefix="logs/", exclude=["*.tmp"]), ObjectFilter.from_options(files_from=p))
        assert sel.filter_keys(["data/c", "logs/a.log", "logs/b.tmp", "logs/z.log"]) == ["logs/a.log"]

    def test_selection_stands_in_for_a_key_filter(self) -> None:
        sel = Selection(KeyFilter(include=["*.jpg"]))
        assert sel.wants("a.jpg")
        assert not sel.wants("a.png")

    def test_a_local_file_the_filter_excludes_is_never_deletable(self) -> None:
        """s5cmd#815: --max-size must not turn into "delete every big local file"."""
        sel = Selection(KeyFilter(), ObjectFilter.from_options(max_size="1M", clock=at_now))
        assert not sel.may_delete_local("big.bin", 2 * MIB, NOW)
        assert sel.may_delete_local("small.bin", 10, NOW)

    def test_an_out_of_scope_key_is_never_deletable(self, tmp_path: Path) -> None:
        p = tmp_path / "keys.txt"
        p.write_text("only\n")
        sel = Selection(KeyFilter(exclude=["*.keep"]), ObjectFilter.from_options(files_from=p))
        assert not sel.may_delete_local("other", 1, NOW)
        assert not sel.may_delete_local("x.keep", 1, NOW)
        assert sel.may_delete_local("only", 1, NOW)

    @given(
        size=st.integers(min_value=0, max_value=10 * MIB),
        age=st.floats(min_value=0, max_value=30 * 86400),
        bounds=st.tuples(
            st.one_of(st.none(), st.integers(0, 5 * MIB)),
            st.one_of(st.none(), st.integers(5 * MIB, 10 * MIB)),
            st.one_of(st.none(), st.floats(0, 86400)),
            st.one_of(st.none(), st.floats(86400, 20 * 86400)),
        ),
    )
    def test_deletable_exactly_when_wanted(
        self, size: int, age: float, bounds: tuple[int | None, int | None, float | None, float | None]
    ) -> None:
        """For any bounds, a local file may be deleted iff the same object would have been wanted."""
        f = ObjectFilter(*bounds, clock=at_now)
        sel = Selection(KeyFilter(), f)
        wanted = sel.rejects(meta(size=size, age=age)) is None
        assert sel.may_delete_local("k", size, NOW - age) is wanted

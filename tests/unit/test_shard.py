"""``--shard K/N``: the parse, the contract's hash, and that shards split a key set exactly."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3sync.errors import ConfigError
from s3sync.model import ALL_KEYS, Shard, parse_shard, shard_of


class TestParse:
    """K/N is parsed strictly, with an error that says what is wrong."""

    @pytest.mark.parametrize(("spec", "want"), [("0/1", (0, 1)), ("3/4", (3, 4)), (" 1 / 2 ", (1, 2))])
    def test_valid(self, spec: str, want: tuple[int, int]) -> None:
        s = parse_shard(spec)
        assert (s.index, s.count) == want
        assert str(s) == f"{want[0]}/{want[1]}"

    @pytest.mark.parametrize("spec", [None, "", "  "])
    def test_empty_means_everything(self, spec: str | None) -> None:
        assert parse_shard(spec) == ALL_KEYS
        assert ALL_KEYS.everything and ALL_KEYS.owns("any/key")

    @pytest.mark.parametrize(
        ("spec", "needle"),
        [
            ("2/2", "K must be below N"),
            ("5/3", "K must be below N"),
            ("0/0", "N must be at least 1"),
            ("-1/2", "K/N"),
            ("1", "K/N"),
            ("a/b", "K/N"),
            ("1/2/3", "K/N"),
            ("1.0/2", "K/N"),
        ],
    )
    def test_invalid(self, spec: str, needle: str) -> None:
        with pytest.raises(ConfigError, match=needle):
            parse_shard(spec)

    def test_constructor_checks_too(self) -> None:
        with pytest.raises(ConfigError):
            Shard(2, 2)


class TestHash:
    """The hash is exactly the contract's: first 8 bytes of SHA-256 of the UTF-8, big-endian, mod N."""

    # Vectors from `printf '%s' KEY | sha256sum | cut -c1-16`, reduced by hand.
    @pytest.mark.parametrize(
        ("key", "n", "want"),
        [
            ("a", 2, 0),
            ("a", 7, 4),
            ("a", 1000, 250),
            ("photos/2024/img 001.jpg", 2, 1),
            ("photos/2024/img 001.jpg", 7, 2),
            ("ünïcode/ключ", 7, 3),
            ("ünïcode/ключ", 1000, 236),
            ("", 1000, 652),
        ],
    )
    def test_vectors(self, key: str, n: int, want: int) -> None:
        assert shard_of(key, n) == want
        assert Shard(want, n).owns(key)
        assert not Shard((want + 1) % n, n).owns(key)

    @given(st.text(min_size=1, max_size=200), st.integers(min_value=1, max_value=64))
    def test_exactly_one_owner(self, key: str, n: int) -> None:
        owners = [k for k in range(n) if Shard(k, n).owns(key)]
        assert owners == [shard_of(key, n)]


class TestSplit:
    """Two shards of a 2-way split cover a key set exactly once, and roughly evenly."""

    def test_two_way_split_covers_once(self) -> None:
        rng = random.Random(13)
        keys = {f"dir{rng.randrange(50)}/file-{i}-{rng.random():.6f}" for i in range(20_000)}
        keys |= {"with space", "plus+sign", "ünïcode/ключ", "a/b/c"}
        left = {k for k in keys if Shard(0, 2).owns(k)}
        right = {k for k in keys if Shard(1, 2).owns(k)}
        assert left | right == keys
        assert not left & right
        assert abs(len(left) - len(right)) < len(keys) * 0.03

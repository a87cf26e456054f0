"""The x vs x/y detector and the case/normalisation policy, against brute-force oracles."""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator

from hypothesis import given, settings
from hypothesis import strategies as st

from s3sync.sync.reconcile.conflicts import CaseConflicts, PrefixConflicts, fold

# characters on both sides of '/' (0x2F) in byte order, plus multi-byte ones
_ALPHABET = ["a", "b", "A", ".", "-", " ", "!", "/", "0", "é", "e\u0301", "É", "漢", "ß"]
_keys = st.lists(
    st.lists(st.sampled_from(_ALPHABET), min_size=1, max_size=6).map("".join),
    max_size=40,
    unique=True,
)


def _byte_order(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def _run(keys: list[str]) -> tuple[dict[str, bool], int]:
    det: PrefixConflicts[str] = PrefixConflicts()
    got: dict[str, bool] = {}
    most = 0
    for k in keys:
        for item, flag in det.push(k, k):
            assert item not in got
            got[item] = flag
        most = max(most, det.held)
    for item, flag in det.finish():
        assert item not in got
        got[item] = flag
    return got, most


class TestPrefixConflicts:
    """x is flagged exactly when some other key starts with x + '/'."""

    @settings(max_examples=400, deadline=None)
    @given(_keys)
    def test_matches_brute_force(self, keys: list[str]) -> None:
        ordered = _byte_order(keys)
        got, most = _run(ordered)
        oracle = {k: any(o.startswith(k + "/") for o in keys) for k in keys}
        assert got == oracle
        # only a chain of nested prefixes is ever held
        assert most <= max((len(k) for k in keys), default=0) + 1

    def test_children_not_adjacent_in_byte_order(self) -> None:
        """'/' sorts after '.', '-' and ' ': x/y arrives after x.log, x-1, 'x 2'."""
        keys = _byte_order(["x", "x.log", "x-1", "x 2", "x/y", "x0"])
        assert keys.index("x/y") > keys.index("x.log")
        got, _ = _run(keys)
        assert got == {"x": True, "x.log": False, "x-1": False, "x 2": False, "x/y": False, "x0": False}

    def test_log_rotation_keys_flow_without_waiting(self) -> None:
        """app.log, app.log.1 … : each key is released by its successor, nothing piles up."""
        det: PrefixConflicts[str] = PrefixConflicts()
        released: list[str] = []
        keys = _byte_order(["app.log"] + [f"app.log.{i}" for i in range(1, 20001)])
        most = 0
        for k in keys:
            released += [item for item, flag in det.push(k, k) if not flag]
            most = max(most, det.held)
        # app.log itself waits (app.log/x could still come), everything else streams
        assert most <= 8
        assert len(released) >= len(keys) - most
        assert "app.log" not in released
        released += [item for item, _ in det.finish()]
        assert sorted(released) == sorted(keys)

    def test_nested_directory_chain(self) -> None:
        got, _ = _run(["a", "a/b", "a/b/c"])
        assert got == {"a": True, "a/b": True, "a/b/c": False}


def _case_oracle(keys: list[str]) -> dict[str, str | None]:
    """Brute force: a key loses when an earlier winner spells a folded prefix differently."""
    winners: list[str] = []
    out: dict[str, str | None] = {}
    for k in keys:
        parts = k.split("/")
        loser_of: str | None = None
        for w in winners:
            wp = w.split("/")
            for i in range(min(len(parts), len(wp))):
                a, b = "/".join(parts[: i + 1]), "/".join(wp[: i + 1])
                fa = "/".join(fold(p) for p in parts[: i + 1])
                fb = "/".join(fold(p) for p in wp[: i + 1])
                if fa == fb and a != b:
                    loser_of = w
                    break
            if loser_of:
                break
        out[k] = loser_of
        if loser_of is None:
            winners.append(k)
    return out


class TestCaseConflicts:
    """First spelling in key order wins every folded path prefix."""

    @settings(max_examples=300, deadline=None)
    @given(_keys)
    def test_matches_brute_force(self, keys: list[str]) -> None:
        ordered = _byte_order(keys)
        cc = CaseConflicts()
        got = {k: (None if (v := cc.check(k)) is None else v.owner) for k in ordered}
        oracle = _case_oracle(ordered)
        assert {k: v is None for k, v in got.items()} == {k: v is None for k, v in oracle.items()}

    def test_first_in_key_order_wins(self) -> None:
        cc = CaseConflicts()
        keys = _byte_order(["a.txt", "A.txt", "A/x", "a/y", "docs/readme"])
        verdicts = {k: cc.check(k) for k in keys}
        assert verdicts["A.txt"] is None  # 'A' (0x41) sorts before 'a' (0x61)
        lost = verdicts["a.txt"]
        assert lost is not None and lost.owner == "A.txt"
        assert "a.txt" in lost.message and "A.txt" in lost.message
        assert verdicts["A/x"] is None
        assert verdicts["a/y"] is not None  # directory 'a' is directory 'A' on this filesystem
        assert verdicts["docs/readme"] is None

    def test_unicode_normalisation_forms_collide(self) -> None:
        nfc, nfd = "caf\u00e9.txt", unicodedata.normalize("NFD", "caf\u00e9.txt")
        assert nfc != nfd
        cc = CaseConflicts(case_sensitive=True)  # normalisation-insensitive only
        first, second = _byte_order([nfc, nfd])
        assert cc.check(first) is None
        assert cc.check(second) is not None
        assert cc.check("CAFE.txt") is None  # case still matters on this filesystem

    def test_same_spelling_is_not_a_conflict(self) -> None:
        cc = CaseConflicts()
        assert cc.check("Dir/a") is None
        assert cc.check("Dir/b") is None
        assert cc.check("Dir/A") is not None


class TestOrderedFlags:
    """flag_conflicts keeps listing order (verify merges in order) with the same verdicts."""

    @settings(max_examples=200, deadline=None)
    @given(_keys)
    async def test_order_and_verdicts(self, keys: list[str]) -> None:
        from s3sync.model import ObjectMeta
        from s3sync.sync.reconcile.conflicts import flag_conflicts

        ordered = _byte_order(keys)

        async def listing() -> AsyncIterator[ObjectMeta]:
            for k in ordered:
                yield ObjectMeta(k, 1, None, 0.0)

        got = [(m.key, flag) async for m, flag in flag_conflicts(listing())]

        # folder markers ('x/') create no directory, so only real children count
        def flagged(k: str) -> bool:
            return not k.endswith("/") and any(o.startswith(k + "/") and not o.endswith("/") for o in keys)

        oracle = [(k, flagged(k)) for k in ordered]
        assert got == oracle


class TestCaseOwner:
    """A delete of another spelling of a kept key would remove the kept file: owner() names it."""

    def test_owner(self) -> None:
        cc = CaseConflicts()
        assert cc.check("Docs/A.txt") is None
        assert cc.owner("docs/a.TXT") == "Docs/A.txt"
        assert cc.owner("Docs/A.txt") is None  # the same spelling is the key itself
        assert cc.owner("other") is None
